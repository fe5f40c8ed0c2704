/// The console's Mustache templates, compiled into the binary (no files to install, no build step).
/// `{{x}}` is escaped; `{{{x}}}` is HTML made and escaped here (charts, the model card, fragments).
enum ConsoleTemplates {
    static let all: [String: String] = [
        "layout": layout, "login": login, "error": error, "models": models, "modelsTable": modelsTable, "model": model,
        "live": live, "confirm": confirm, "explanation": explanation, "jobs": jobs, "jobsTable": jobsTable, "keys": keys,
    ]

    static let layout = """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · Tern</title>
        <link rel="icon" href="data:,">
        <link rel="stylesheet" href="/ui/assets/console.css">
        <script src="/ui/assets/console.js" defer></script>
        </head>
        <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
        <a class="brand" href="/ui">Tern</a>
        <nav aria-label="Console"><a href="/ui">Models</a><a href="/ui/jobs">Batch jobs</a>{{#admin}}<a href="/ui/keys">API keys</a>{{/admin}}</nav>
        {{#signedIn}}<form class="signout" method="post" action="/ui/logout"><input type="hidden" name="csrf" value="{{csrf}}"><span>{{who}}</span> <button type="submit">Sign out</button></form>{{/signedIn}}
        </header>
        <main id="main">
        {{{body}}}
        </main>
        <footer>tern {{version}}</footer>
        </body>
        </html>
        """

    static let login = """
        <h1>Sign in</h1>
        <p>This server checks credentials: give an API key (<code>tern keys create NAME --scopes read</code>) or a bearer token
        from your identity provider. The console keeps it in a cookie only this server's pages send.</p>
        {{#message}}<p class="error" role="alert">{{message}}</p>{{/message}}
        <form method="post" action="/ui/login" class="stack">
        <input type="hidden" name="next" value="{{next}}">
        <label for="credential">API key or token</label>
        <input id="credential" name="credential" type="password" autocomplete="off" required>
        <button type="submit">Sign in</button>
        </form>
        """

    static let error = """
        <h1>{{status}}</h1>
        <p class="error" role="alert">{{message}}</p>
        <p><a href="/ui">Back to the models</a></p>
        """

    static let models = """
        <h1>Models</h1>
        <div data-poll="/ui/live" aria-live="polite">{{{table}}}</div>
        """

    static let modelsTable = """
        {{#none}}<p>No models are served yet.</p>{{/none}}
        {{^none}}
        <div class="scroll"><table class="models">
        <caption>Each model's versions, traffic, and its requests over the last 5 minutes</caption>
        <thead><tr><th scope="col">Model</th><th scope="col">Versions</th><th scope="col">Traffic</th><th scope="col">Requests/s (last minute)</th>
        <th scope="col">Errors (5 min)</th><th scope="col">Requests (5 min)</th><th scope="col">Last 5 minutes</th></tr></thead>
        <tbody>
        {{#models}}<tr><th scope="row"><a href="{{href}}">{{name}}</a></th><td>{{versions}}<br><small>{{loaded}}</small></td><td>{{traffic}}</td>
        <td class="num" data-rate>{{rate}}</td><td class="num">{{errors}}</td><td class="num" data-requests>{{requests}}</td><td>{{{spark}}}</td></tr>{{/models}}
        </tbody></table></div>
        {{/none}}
        """

    static let model = """
        <p class="crumbs"><a href="/ui">Models</a> / {{name}}</p>
        <h1>{{name}}</h1>
        {{#done}}<p class="notice" role="status">Done: {{done}}.</p>{{/done}}
        <nav class="sections" aria-label="Sections of this page"><a href="#traffic">Traffic</a><a href="#versions">Versions</a><a href="#rollout">Rollout</a>
        <a href="#drift">Drift</a><a href="#quality">Quality</a><a href="#alerts">Alerts</a><a href="#audit">Audit</a><a href="#card">Model card</a>{{#mayExplain}}<a href="#explain">Explain</a>{{/mayExplain}}</nav>

        <section id="traffic" aria-labelledby="traffic-title">
        <h2 id="traffic-title">Live traffic</h2>
        <p>Requests without a version: {{traffic}}.</p>
        <form method="get" action="{{href}}" class="inline"><label for="span">Show the last</label>
        <select id="span" name="span">{{#spans}}<option value="{{value}}"{{#selected}} selected{{/selected}}>{{label}}</option>{{/spans}}</select>
        <button type="submit">Show</button></form>
        <div data-poll="{{href}}/live?span={{span}}" aria-live="off">{{{live}}}</div>
        </section>

        <section id="versions" aria-labelledby="versions-title">
        <h2 id="versions-title">Versions</h2>
        <div class="scroll"><table>
        <thead><tr><th scope="col">Version</th><th scope="col">State</th><th scope="col">Loaded</th><th scope="col">Aliases</th>
        <th scope="col">Holdout</th><th scope="col">Created</th><th scope="col">By</th><th scope="col">sha256</th>{{#admin}}<th scope="col">Act</th>{{/admin}}</tr></thead>
        <tbody>
        {{#versions}}<tr><th scope="row">v{{number}}</th><td>{{state}}</td><td>{{loaded}}</td><td>{{aliases}}</td><td>{{metrics}}</td>
        <td>{{created}}</td><td>{{by}}</td><td><code>{{sha}}</code></td>
        {{#admin}}<td>{{#archivable}}<form method="get" action="{{href}}/confirm"><input type="hidden" name="action" value="archive">
        <input type="hidden" name="version" value="{{number}}"><button type="submit">Archive v{{number}}…</button></form>{{/archivable}}</td>{{/admin}}</tr>{{/versions}}
        </tbody></table></div>
        {{#admin}}
        <form method="get" action="{{href}}/confirm" class="inline" aria-label="Point an alias at a version">
        <input type="hidden" name="action" value="alias">
        <label for="alias">Point alias</label> <input id="alias" name="alias" list="aliases" value="production" required size="12">
        <datalist id="aliases">{{#aliasNames}}<option value="{{name}}">{{/aliasNames}}</datalist>
        <label for="alias-version">at</label> <select id="alias-version" name="version">{{#versionNumbers}}<option value="{{number}}">v{{number}}</option>{{/versionNumbers}}</select>
        <button type="submit">Move alias…</button>
        </form>
        {{/admin}}
        </section>

        <section id="rollout" aria-labelledby="rollout-title">
        <h2 id="rollout-title">Rollout</h2>
        {{#rollout}}
        <p>v{{stable}} → v{{candidate}} ({{alias}}): <strong class="state-{{state}}">{{state}}</strong>{{#live}}, step {{step}} of {{stepCount}}{{/live}};
        started {{startedAt}} by {{startedBy}}.{{#reason}} {{reason}}{{/reason}}</p>
        <ol class="steps">{{#steps}}<li class="{{#current}}current{{/current}}{{#done}}done{{/done}}">{{share}}{{#current}} (now){{/current}}</li>{{/steps}}</ol>
        {{#hasNumbers}}<div class="scroll"><table><caption>This step's numbers, as the rollout judges them</caption><tbody>
        {{#numbers}}<tr><th scope="row">{{name}}</th><td>{{value}}</td></tr>{{/numbers}}</tbody></table></div>{{/hasNumbers}}
        {{#hasActions}}<div class="actions">{{#actions}}<form method="get" action="{{href}}/confirm"><input type="hidden" name="action" value="rollout">
        <input type="hidden" name="step" value="{{step}}"><button type="submit">{{step}}…</button></form>{{/actions}}</div>{{/hasActions}}
        {{/rollout}}
        {{^rollout}}<p>No rollout has run for this model.</p>{{/rollout}}
        </section>

        <section id="drift" aria-labelledby="drift-title">
        <h2 id="drift-title">Drift</h2>
        {{#drift}}
        {{#unavailable}}<p>{{unavailable}}</p>{{/unavailable}}
        {{^unavailable}}
        <p>v{{version}}: the newest {{predictions}} predictions ({{rows}} rows) against {{referenceRows}} reference rows.
        {{#anyDrift}}<strong class="bad">Drifted: {{drifted}}</strong>{{/anyDrift}}{{^anyDrift}}No feature has drifted.{{/anyDrift}}</p>
        {{^empty}}
        <div class="scroll"><table>
        <thead><tr><th scope="col">Feature</th><th scope="col">Kind</th><th scope="col">Live rows</th><th scope="col">PSI</th><th scope="col">Test p</th><th scope="col">Drifted</th></tr></thead>
        <tbody>{{#features}}<tr{{#drifted}} class="drifted"{{/drifted}}><th scope="row">{{feature}}</th><td>{{kind}}</td><td class="num">{{live}}</td><td class="num">{{psi}}</td>
        <td class="num">{{test}} {{p}}</td><td>{{#drifted}}yes: {{reasons}}{{/drifted}}{{^drifted}}no{{/drifted}}{{#insufficient}} ({{insufficient}}){{/insufficient}}</td></tr>{{/features}}</tbody>
        </table></div>
        <div class="grid">
        {{#features}}{{#histogram}}<figure><figcaption>{{feature}}{{#drifted}} (drifted){{/drifted}}</figcaption>{{{histogram}}}
        <details><summary>Table</summary><table><thead><tr><th scope="col">Bin</th><th scope="col">Reference</th><th scope="col">Live</th></tr></thead>
        <tbody>{{#bins}}<tr><th scope="row">{{bin}}</th><td class="num">{{reference}}</td><td class="num">{{live}}</td></tr>{{/bins}}</tbody></table></details></figure>{{/histogram}}{{/features}}
        </div>
        {{/empty}}
        {{/unavailable}}
        {{/drift}}
        {{^drift}}<p>Drift needs a registry whose bundles carry reference data (<code>tern pack --reference</code>).</p>{{/drift}}
        </section>

        <section id="quality" aria-labelledby="quality-title">
        <h2 id="quality-title">Live quality</h2>
        {{#hasQuality}}
        {{#quality}}<div class="scroll"><table><caption>v{{version}}: {{predictions}} predictions with feedback ({{rows}} rows); median label delay {{delay}}</caption>
        <thead><tr><th scope="col">Metric</th><th scope="col">Live</th><th scope="col">Holdout at pack time</th></tr></thead>
        <tbody>{{#metrics}}<tr><th scope="row">{{name}}</th><td class="num">{{live}}</td><td class="num">{{validation}}</td></tr>{{/metrics}}</tbody></table></div>{{/quality}}
        {{/hasQuality}}
        {{^hasQuality}}<p>No feedback yet: post ground truth to <code>/api/v1/feedback</code> by request id.</p>{{/hasQuality}}
        </section>

        <section id="alerts" aria-labelledby="alerts-title">
        <h2 id="alerts-title">Alerts</h2>
        {{#hasAlerts}}<div class="scroll"><table>
        <thead><tr><th scope="col">Rule</th><th scope="col">Metric</th><th scope="col">State</th><th scope="col">Value</th><th scope="col">Threshold</th>
        <th scope="col">Severity</th><th scope="col">Since</th><th scope="col">Last resolved</th></tr></thead>
        <tbody>{{#alerts}}<tr{{#firing}} class="firing"{{/firing}}><th scope="row">{{rule}}</th><td>{{metric}}</td><td>{{state}}</td><td class="num">{{value}}</td>
        <td class="num">{{threshold}}</td><td>{{severity}}</td><td>{{since}}</td><td>{{resolved}}</td></tr>{{/alerts}}</tbody></table></div>{{/hasAlerts}}
        {{^hasAlerts}}<p>No alert rule watches this model (<code>tern serve --alert-rules</code>).</p>{{/hasAlerts}}
        </section>

        <section id="audit" aria-labelledby="audit-title">
        <h2 id="audit-title">Audit trail</h2>
        {{#audit}}
        <form method="get" action="{{href}}#audit" class="inline" aria-label="Filter the audit trail">
        <label for="audit-action">Action</label> <select id="audit-action" name="action"><option value="">any</option>{{#actions}}<option{{#selected}} selected{{/selected}}>{{name}}</option>{{/actions}}</select>
        <label for="audit-actor">Actor</label> <input id="audit-actor" name="actor" value="{{actor}}" size="14">
        <button type="submit">Filter</button></form>
        <div class="scroll"><table><caption>{{shown}} of {{total}} entries, newest first</caption>
        <thead><tr><th scope="col">#</th><th scope="col">At</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Version</th><th scope="col">Change</th></tr></thead>
        <tbody>{{#entries}}<tr><th scope="row">{{seq}}</th><td>{{at}}</td><td>{{actor}}</td><td>{{action}}</td><td>{{version}}</td><td class="change">{{change}}</td></tr>{{/entries}}</tbody></table></div>
        {{/audit}}
        {{^audit}}<p>A model folder keeps no audit trail; a registry does (<code>tern serve --data</code>).</p>{{/audit}}
        </section>

        <section id="card" aria-labelledby="card-title">
        <h2 id="card-title">Model card{{#cardVersion}} (v{{cardVersion}}){{/cardVersion}}</h2>
        {{#card}}<div class="card">{{{card}}}</div>{{/card}}
        {{^card}}<p>Model cards come with bundles (<code>tern pack</code>).</p>{{/card}}
        </section>

        {{#mayExplain}}
        <section id="explain" aria-labelledby="explain-title">
        <h2 id="explain-title">Explain a prediction</h2>
        <form method="post" action="{{href}}/explain" class="stack">
        <input type="hidden" name="csrf" value="{{csrf}}">
        <label for="request">A v2 request (JSON), as POST /v2/models/{{name}}/infer takes it</label>
        <textarea id="request" name="request" rows="6" spellcheck="false">{{example}}</textarea>
        <button type="submit">Explain</button>
        </form>
        </section>
        {{/mayExplain}}
        """

    static let live = """
        {{#none}}<p>No requests in the last {{minutes}} minutes.</p>{{/none}}
        {{^none}}
        <div class="grid">
        <figure><figcaption>Requests per second</figcaption>{{{rateChart}}}</figure>
        <figure><figcaption>Latency (p50 solid, p99 dashed)</figcaption>{{{latencyChart}}}</figure>
        <figure><figcaption>Errors per second</figcaption>{{{errorChart}}}</figure>
        </div>
        <div class="scroll"><table class="live"><caption>Each version over the last {{minutes}} minutes</caption>
        <thead><tr><th scope="col">Version</th><th scope="col">Requests</th><th scope="col">Requests/s</th><th scope="col">Refused (4xx)</th>
        <th scope="col">Failed (5xx)</th><th scope="col">Error rate</th><th scope="col">p50</th><th scope="col">p95</th><th scope="col">p99</th></tr></thead>
        <tbody>{{#rows}}<tr><th scope="row">v{{version}}</th><td class="num" data-requests>{{requests}}</td><td class="num">{{rate}}</td><td class="num">{{refused}}</td>
        <td class="num">{{failed}}</td><td class="num">{{errorRate}}</td><td class="num">{{p50}}</td><td class="num">{{p95}}</td><td class="num">{{p99}}</td></tr>{{/rows}}</tbody>
        </table></div>
        {{/none}}
        """

    static let confirm = """
        <p class="crumbs"><a href="/ui">Models</a> / <a href="{{href}}">{{model}}</a></p>
        <h1>Confirm</h1>
        <p>You are about to <strong>{{summary}}</strong>. It is recorded in the audit trail under your name.</p>
        <form method="post" action="{{href}}/act" class="inline">
        <input type="hidden" name="csrf" value="{{csrf}}">
        {{#fields}}<input type="hidden" name="{{name}}" value="{{value}}">{{/fields}}
        <button type="submit" class="danger">Yes, {{summary}}</button> <a href="{{href}}">Cancel</a>
        </form>
        """

    static let explanation = """
        <p class="crumbs"><a href="/ui">Models</a> / <a href="{{href}}">{{model}}</a></p>
        <h1>Why v{{version}} answered {{score}}</h1>
        <p>Each feature's attribution to <strong>{{output}}</strong> for the first row (red raises it, blue lowers it), from
        the base value {{base}}.</p>
        <figure>{{{chart}}}</figure>
        <div class="scroll"><table><caption>Attributions, largest first</caption>
        <thead><tr><th scope="col">Feature</th><th scope="col">Attribution</th></tr></thead>
        <tbody>{{#items}}<tr><th scope="row">{{name}}</th><td class="num">{{value}}</td></tr>{{/items}}</tbody></table></div>
        <details><summary>The request</summary><pre>{{request}}</pre></details>
        """

    static let jobs = """
        <h1>Batch jobs</h1>
        {{^served}}<p>This server runs no batch jobs (<code>tern serve --batch-root DIR</code>).</p>{{/served}}
        {{#served}}<div data-poll="/ui/jobs/live" aria-live="polite">{{{table}}}</div>{{/served}}
        """

    static let jobsTable = """
        {{#none}}<p>No batch job has run.</p>{{/none}}
        {{^none}}<div class="scroll"><table><caption>Running jobs and the history, newest first</caption>
        <thead><tr><th scope="col">Job</th><th scope="col">Model</th><th scope="col">State</th><th scope="col">Progress</th><th scope="col">Rows</th>
        <th scope="col">Rejected</th><th scope="col">Files</th><th scope="col">Started</th><th scope="col">Ended</th></tr></thead>
        <tbody>{{#jobs}}<tr><th scope="row"><code>{{id}}</code></th><td>{{model}} {{version}}</td><td>{{state}}{{#error}}: {{error}}{{/error}}</td>
        <td>{{#progress}}<progress max="100" value="{{progress}}">{{progress}}%</progress> {{progress}}%{{/progress}}</td>
        <td class="num">{{rows}}</td><td class="num">{{rejected}}</td><td>{{input}} → {{output}}</td><td>{{started}}</td><td>{{ended}}</td></tr>{{/jobs}}</tbody>
        </table></div>{{/none}}
        """

    static let keys = """
        <h1>API keys</h1>
        <p>Names, scopes and use; a key's secret is shown once, when it is made (<code>tern keys create</code>), and never again.</p>
        <div class="scroll"><table>
        <thead><tr><th scope="col">Name</th><th scope="col">Id</th><th scope="col">Scopes</th><th scope="col">Models</th><th scope="col">Last used</th>
        <th scope="col">Created</th><th scope="col">By</th><th scope="col">Expires</th><th scope="col">Revoked</th></tr></thead>
        <tbody>{{#keys}}<tr><th scope="row">{{name}}</th><td><code>{{id}}</code></td><td>{{scopes}}</td><td>{{models}}</td><td>{{used}}</td>
        <td>{{created}}</td><td>{{by}}</td><td>{{expires}}</td><td>{{revoked}}</td></tr>{{/keys}}</tbody>
        </table></div>
        """
}
