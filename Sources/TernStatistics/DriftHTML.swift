import Foundation

/// A drift report as one self-contained HTML page (inline CSS and SVG, no script, nothing fetched): a
/// summary table, then one section per feature, drifted and most shifted first, each with the reference's
/// and the live data's distributions side by side and every statistic.
public enum DriftHTML {
    public static func page(title: String, subtitle: String, features: [FeatureDrift]) -> String {
        let ordered = features.sorted { ($0.drifted ? 1 : 0, $0.severity) > ($1.drifted ? 1 : 0, $1.severity) }
        var html = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <style>
            body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px; color: #1d2430; padding: 0 1rem; }
            h1 { font-size: 1.6rem; margin-bottom: .2rem; } .sub { color: #5b6575; margin-top: 0; }
            table { border-collapse: collapse; width: 100%; margin: .8rem 0 1.6rem; }
            th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid #e3e7ee; font-variant-numeric: tabular-nums; }
            th { background: #f4f6fa; font-weight: 600; }
            .badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .8rem; font-weight: 600; }
            .drift { background: #fde2e1; color: #a61b1b; } .ok { background: #def5e5; color: #1b6b36; }
            section { border: 1px solid #e3e7ee; border-radius: 10px; padding: 1rem 1.2rem; margin: 1.2rem 0; }
            section h2 { font-size: 1.15rem; margin: 0 0 .4rem; } .reasons { color: #a61b1b; margin: .2rem 0 .6rem; }
            .legend span { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; margin: 0 .3rem 0 1rem; vertical-align: -1px; }
            .stats td:first-child { color: #5b6575; width: 14rem; }
            </style></head><body>
            <h1>\(escape(title))</h1>
            <p class="sub">\(escape(subtitle))</p>
            <table><thead><tr><th>feature</th><th>kind</th><th>verdict</th><th>PSI</th><th>Jensen-Shannon</th><th>test p-value</th><th>missing (ref / live)</th></tr></thead><tbody>

            """
        for feature in ordered {
            html +=
                "<tr><td><a href=\"#\(anchor(feature.feature))\">\(escape(feature.feature))</a></td><td>\(feature.kind.rawValue)</td><td>"
                + badge(feature) + "</td><td>\(number(feature.psi))</td><td>\(number(feature.jensenShannon))</td><td>"
                + number(feature.ksPValue ?? feature.chiSquaredPValue) + "</td><td>"
                + String(format: "%.1f%% / %.1f%%", feature.referenceMissingRate * 100, feature.liveMissingRate * 100) + "</td></tr>\n"
        }
        html += "</tbody></table>\n"
        for feature in ordered { html += section(feature) }
        html +=
            "<p class=\"sub\">Statistics as scipy computes them; a feature drifts when its PSI is above 0.2, a test's p-value is below 0.01 with at least 100 live values, or a new category appears (docs/drift.md).</p>\n</body></html>\n"
        return html
    }

    static func section(_ feature: FeatureDrift) -> String {
        var html = "<section id=\"\(anchor(feature.feature))\"><h2>\(escape(feature.feature)) " + badge(feature) + "</h2>\n"
        if !feature.reasons.isEmpty { html += "<p class=\"reasons\">" + escape(feature.reasons.joined(separator: "; ")) + "</p>\n" }
        html +=
            "<div class=\"legend\"><span style=\"background:#9aa5b8\"></span>reference (\(feature.referenceCount))"
            + "<span style=\"background:#2f6fdf\"></span>live (\(feature.liveCount))</div>\n"
        html += chart(feature)
        var rows: [(String, String)] = [
            ("kind", feature.kind.rawValue), ("PSI", number(feature.psi)), ("Jensen-Shannon distance", number(feature.jensenShannon)),
        ]
        if feature.kind == .numeric {
            rows += [
                ("Kolmogorov-Smirnov", number(feature.ksStatistic)), ("KS p-value", number(feature.ksPValue)),
                ("Wasserstein", number(feature.wasserstein)),
            ]
        } else {
            rows += [
                ("chi-squared", number(feature.chiSquared)), ("chi-squared p-value", number(feature.chiSquaredPValue)),
                ("new categories", escape((feature.newCategories ?? []).joined(separator: ", "))),
                ("vanished categories", escape((feature.vanishedCategories ?? []).joined(separator: ", "))),
            ]
        }
        rows.append(
            ("missing (reference / live)", String(format: "%.1f%% / %.1f%%", feature.referenceMissingRate * 100, feature.liveMissingRate * 100)))
        html += "<table class=\"stats\">" + rows.map { "<tr><td>\($0.0)</td><td>\($0.1)</td></tr>" }.joined() + "</table></section>\n"
        return html
    }

    /// Grouped bars: each bin's share of the reference and of the live data.
    static func chart(_ feature: FeatureDrift) -> String {
        guard let bins = feature.bins, let reference = feature.referenceCounts, let live = feature.liveCounts, !bins.isEmpty else { return "" }
        let referenceTotal = max(1, reference.reduce(0, +)), liveTotal = max(1, live.reduce(0, +))
        let shares = zip(reference, live).map { (Double($0) / Double(referenceTotal), Double($1) / Double(liveTotal)) }
        let highest = max(0.01, shares.map { max($0.0, $0.1) }.max() ?? 0.01)
        let width = 1000.0, height = 220.0, left = 44.0, bottom = 56.0, top = 14.0
        let slot = (width - left) / Double(bins.count)
        let bar = min(28, slot * 0.36)
        var svg =
            "<svg viewBox=\"0 -\(Int(top)) \(Int(width)) \(Int(height + bottom + top))\" width=\"100%\" role=\"img\" aria-label=\"\(escape(feature.feature)) distribution\">"
        for tick in 0...4 {
            let value = highest * Double(tick) / 4
            let y = height - height * Double(tick) / 4 + 4
            svg += "<line x1=\"\(left)\" x2=\"\(width)\" y1=\"\(y)\" y2=\"\(y)\" stroke=\"#e3e7ee\"/>"
            svg +=
                "<text x=\"\(left - 6)\" y=\"\(y + 4)\" font-size=\"11\" text-anchor=\"end\" fill=\"#5b6575\">\(Int((value * 100).rounded()))%</text>"
        }
        for (index, (r, l)) in shares.enumerated() {
            let x = left + slot * Double(index) + slot / 2
            let rh = height * r / highest, lh = height * l / highest
            svg +=
                "<rect x=\"\(x - bar - 1)\" y=\"\(height - rh + 4)\" width=\"\(bar)\" height=\"\(rh)\" fill=\"#9aa5b8\"><title>reference \(String(format: "%.1f%%", r * 100))</title></rect>"
            svg +=
                "<rect x=\"\(x + 1)\" y=\"\(height - lh + 4)\" width=\"\(bar)\" height=\"\(lh)\" fill=\"#2f6fdf\"><title>live \(String(format: "%.1f%%", l * 100))</title></rect>"
            let label = escape(bins[index].count > 18 ? String(bins[index].prefix(17)) + "…" : bins[index])
            svg +=
                "<text x=\"\(x)\" y=\"\(height + 20)\" font-size=\"11\" text-anchor=\"end\" fill=\"#1d2430\" transform=\"rotate(-30 \(x) \(height + 20))\">\(label)</text>"
        }
        return svg + "</svg>\n"
    }

    static func badge(_ feature: FeatureDrift) -> String {
        feature.drifted ? "<span class=\"badge drift\">drift</span>" : "<span class=\"badge ok\">ok</span>"
    }

    static func number(_ value: Double?) -> String {
        guard let value else { return "–" }
        return value != 0 && abs(value) < 1e-4 ? String(format: "%.2e", value) : String(format: "%.4g", value)
    }

    static func anchor(_ name: String) -> String {
        "f-" + name.unicodeScalars.map { CharacterSet.alphanumerics.contains($0) ? String($0) : "-" }.joined()
    }

    /// Text for HTML: the five characters that could open markup or end an attribute, as entities (the console's pages too).
    package static func escape(_ text: String) -> String {
        var out = ""
        for character in text {
            switch character {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(character)
            }
        }
        return out
    }
}
