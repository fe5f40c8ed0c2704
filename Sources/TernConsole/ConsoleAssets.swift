/// The console's style sheet and script, served from the binary (no CDN, no build step).
enum ConsoleAssets {
    static let css = """
        :root { --ink: #111827; --muted: #4b5563; --line: #e5e7eb; --accent: #1d4ed8; --bad: #b91c1c; --bg: #ffffff; --panel: #f9fafb; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); background: var(--bg); }
        a { color: var(--accent); }
        .skip { position: absolute; left: -999px; }
        .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px 8px; }
        header.top { display: flex; flex-wrap: wrap; align-items: center; gap: 8px 20px; padding: 10px 20px; border-bottom: 1px solid var(--line); background: var(--panel); }
        .brand { font-weight: 700; font-size: 18px; text-decoration: none; color: var(--ink); }
        header nav a { margin-right: 14px; }
        .signout { margin-left: auto; color: var(--muted); }
        main { padding: 12px 20px 40px; max-width: 1280px; }
        footer { padding: 12px 20px; color: var(--muted); border-top: 1px solid var(--line); font-size: 13px; }
        h1 { font-size: 24px; margin: 8px 0 12px; }
        h2 { font-size: 19px; margin: 28px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
        h3, h4, h5, h6 { font-size: 16px; margin: 16px 0 6px; }
        table { border-collapse: collapse; margin: 8px 0; min-width: 50%; }
        caption { text-align: left; color: var(--muted); padding: 4px 0; }
        th, td { border-bottom: 1px solid var(--line); padding: 5px 10px 5px 0; text-align: left; vertical-align: top; }
        thead th { font-size: 13px; color: var(--muted); font-weight: 600; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        td.change { max-width: 36em; overflow-wrap: anywhere; font-size: 13px; }
        .scroll { overflow-x: auto; max-width: 100%; }
        .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 12px 20px; }
        figure { margin: 8px 0; }
        figcaption { font-weight: 600; font-size: 14px; }
        svg.chart, svg.bars { max-width: 100%; height: auto; }
        svg.histogram { max-width: 100%; height: auto; }
        .notice { background: #ecfdf5; border: 1px solid #a7f3d0; padding: 6px 10px; }
        .error { color: var(--bad); }
        .bad, tr.drifted th, tr.firing th { color: var(--bad); }
        .sections a { margin-right: 12px; }
        .crumbs { color: var(--muted); margin: 4px 0; }
        form.inline { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 8px; margin: 8px 0; }
        form.stack { display: grid; gap: 8px; max-width: 40em; }
        .actions { display: flex; gap: 8px; flex-wrap: wrap; }
        textarea { width: 100%; font: 13px/1.4 ui-monospace, monospace; }
        input, select, button, textarea { font-size: 15px; }
        button { padding: 4px 12px; border: 1px solid #9ca3af; background: #fff; border-radius: 4px; cursor: pointer; }
        button.danger { border-color: var(--bad); color: var(--bad); }
        ol.steps { display: flex; flex-wrap: wrap; gap: 6px 18px; padding-left: 18px; }
        ol.steps li.current { font-weight: 700; }
        ol.steps li.done { color: var(--muted); }
        pre { white-space: pre-wrap; overflow-wrap: anywhere; }
        code { font-size: 13px; overflow-wrap: anywhere; }
        .card table { font-size: 14px; }
        @media (max-width: 600px) {
          main { padding: 8px 10px 30px; }
          header.top { padding: 8px 10px; }
          .grid { grid-template-columns: 1fr; }
          th, td { padding-right: 6px; }
          table { min-width: 0; }
        }
        """

    /// Refreshes every `[data-poll]` element from its URL every 2 s while the page is visible.
    static let script = """
        "use strict";
        (function () {
          var busy = false;
          function refresh() {
            if (busy || document.hidden) return;
            var parts = document.querySelectorAll("[data-poll]");
            if (parts.length === 0) return;
            busy = true;
            var pending = parts.length;
            parts.forEach(function (part) {
              fetch(part.getAttribute("data-poll"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
                .then(function (answer) { return answer.ok ? answer.text() : null; })
                .then(function (html) { if (html !== null) { part.innerHTML = html; part.setAttribute("data-refreshed", String(Date.now())); } })
                .catch(function () {})
                .finally(function () { pending -= 1; if (pending === 0) busy = false; });
            });
          }
          setInterval(refresh, 2000);
        })();
        """
}
