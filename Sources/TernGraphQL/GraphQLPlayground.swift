/// A small GraphiQL-style page (`tern serve --graphql-playground`): a query, its variables, a credential, and
/// the answer; the schema's types listed from introspection. Served from the binary, no CDN.
enum GraphQLPlayground {
    static let page = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>GraphQL · Tern</title>
        <link rel="icon" href="data:,">
        <link rel="stylesheet" href="/graphql/playground.css">
        <script src="/graphql/playground.js" defer></script>
        </head>
        <body>
        <header><strong>Tern GraphQL</strong> <a href="/ui">Console</a></header>
        <main>
        <form id="run">
        <div class="columns">
        <div>
        <label for="query">Query</label>
        <textarea id="query" rows="16" spellcheck="false">{
          models {
            name
            defaultVersion
            versions { number state inputs { name datatype shape } }
          }
        }</textarea>
        <label for="variables">Variables (JSON)</label>
        <textarea id="variables" rows="4" spellcheck="false">{}</textarea>
        <label for="credential">API key or token (kept in this tab only)</label>
        <input id="credential" type="password" autocomplete="off">
        <button type="submit">Run</button>
        </div>
        <div>
        <label for="answer">Answer</label>
        <output id="answer" for="query"><pre></pre></output>
        <details><summary>Types</summary><ul id="types"></ul></details>
        </div>
        </div>
        </form>
        </main>
        </body>
        </html>
        """

    static let css = """
        body { margin: 0; font: 15px/1.4 system-ui, sans-serif; color: #111827; }
        header { padding: 10px 16px; border-bottom: 1px solid #e5e7eb; background: #f9fafb; }
        header a { margin-left: 16px; color: #1d4ed8; }
        main { padding: 12px 16px; }
        .columns { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 16px; }
        label { display: block; font-weight: 600; margin: 8px 0 4px; }
        textarea, input { width: 100%; font: 13px/1.4 ui-monospace, monospace; }
        button { margin-top: 8px; padding: 4px 14px; }
        pre { background: #f9fafb; border: 1px solid #e5e7eb; padding: 8px; min-height: 12em; white-space: pre-wrap; overflow-wrap: anywhere; }
        """

    static let script = """
        "use strict";
        (function () {
          var credential = document.getElementById("credential");
          credential.value = sessionStorage.getItem("tern-credential") || "";
          function ask(query, variables) {
            var headers = { "Content-Type": "application/json" };
            if (credential.value) headers["Authorization"] = "Bearer " + credential.value;
            return fetch("/graphql", { method: "POST", headers: headers, body: JSON.stringify({ query: query, variables: variables }) })
              .then(function (answer) { return answer.text(); });
          }
          function types() {
            ask("{ __schema { types { name kind } } }", {}).then(function (text) {
              var list = document.getElementById("types");
              list.textContent = "";
              try {
                JSON.parse(text).data.__schema.types.filter(function (t) { return t.name.indexOf("__") !== 0; }).forEach(function (t) {
                  var item = document.createElement("li");
                  item.textContent = t.name + " (" + t.kind.toLowerCase() + ")";
                  list.appendChild(item);
                });
              } catch (e) {}
            });
          }
          document.getElementById("run").addEventListener("submit", function (event) {
            event.preventDefault();
            sessionStorage.setItem("tern-credential", credential.value);
            var out = document.querySelector("#answer pre");
            var variables;
            try { variables = JSON.parse(document.getElementById("variables").value || "{}"); }
            catch (e) { out.textContent = "The variables are not JSON: " + e.message; return; }
            ask(document.getElementById("query").value, variables).then(function (text) {
              try { out.textContent = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { out.textContent = text; }
              types();
            });
          });
        })();
        """
}
