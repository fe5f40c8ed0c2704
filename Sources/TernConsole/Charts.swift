import Foundation
import TernStatistics

/// Small inline SVG charts, drawn on the server: no script, no style sheet of their own (presentation
/// attributes only, which the console's content security policy allows). Each has a text table beside it in
/// the page (the charts are `role="img"` with a label; the numbers are in the table).
enum Charts {
    static let palette = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2"]

    /// A line without axes (the models page's requests per second).
    static func sparkline(_ values: [Double], width: Int = 160, height: Int = 32, label: String) -> String {
        let top = max(values.max() ?? 0, 1e-9)
        let step = values.count > 1 ? Double(width) / Double(values.count - 1) : 0
        let points = values.enumerated().map { index, value in
            "\(fmt(Double(index) * step)),\(fmt(Double(height - 2) - value / top * Double(height - 4)))"
        }.joined(separator: " ")
        return """
            <svg class="spark" role="img" aria-label="\(HTML.escape(label))" width="\(width)" height="\(height)" viewBox="0 0 \(width) \(height)">\
            <polyline fill="none" stroke="\(palette[0])" stroke-width="1.5" points="\(points)"/></svg>
            """
    }

    struct Line {
        var name: String
        var values: [Double?]
        var dashed = false
    }

    /// Lines over the same seconds, with a y axis (0 to the top value) and a legend; gaps where a value is nil.
    static func lines(_ lines: [Line], unit: String, label: String, width: Int = 560, height: Int = 180) -> String {
        let left = 48.0, right = 8.0, top = 10.0, bottom = 22.0
        let plotWidth = Double(width) - left - right, plotHeight = Double(height) - top - bottom
        let highest = lines.flatMap { $0.values.compactMap { $0 } }.max() ?? 0
        let ceiling = niceCeiling(highest)
        var svg = """
            <svg class="chart" role="img" aria-label="\(HTML.escape(label))" width="100%" viewBox="0 0 \(width) \(height)" \
            preserveAspectRatio="xMinYMin meet">
            """
        for tick in 0...4 {
            let value = ceiling * Double(tick) / 4
            let y = top + plotHeight - plotHeight * Double(tick) / 4
            svg += "<line x1=\"\(fmt(left))\" x2=\"\(fmt(left + plotWidth))\" y1=\"\(fmt(y))\" y2=\"\(fmt(y))\" stroke=\"#e5e7eb\"/>"
            svg += "<text x=\"\(fmt(left - 4))\" y=\"\(fmt(y + 4))\" font-size=\"10\" text-anchor=\"end\" fill=\"#4b5563\">\(number(value))</text>"
        }
        svg += "<text x=\"\(fmt(left))\" y=\"\(height - 4)\" font-size=\"10\" fill=\"#4b5563\">\(HTML.escape(unit))</text>"
        for (index, line) in lines.enumerated() {
            let count = max(line.values.count - 1, 1)
            var segments: [[String]] = [[]]
            for (at, value) in line.values.enumerated() {
                guard let value else {
                    if !(segments.last?.isEmpty ?? true) { segments.append([]) }
                    continue
                }
                let x = left + plotWidth * Double(at) / Double(count)
                let y = top + plotHeight - (ceiling > 0 ? value / ceiling * plotHeight : 0)
                segments[segments.count - 1].append("\(fmt(x)),\(fmt(y))")
            }
            let color = palette[index % palette.count]
            for segment in segments where !segment.isEmpty {
                if segment.count == 1 {
                    // A lone second between gaps: a dot, since a line of one point is invisible.
                    let xy = segment[0].split(separator: ",")
                    svg += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"2\" fill=\"\(color)\"/>"
                    continue
                }
                svg +=
                    "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.5\"\(line.dashed ? " stroke-dasharray=\"4 3\"" : "") points=\"\(segment.joined(separator: " "))\"/>"
            }
            let legendX = left + 8 + Double(index) * 110
            svg += "<rect x=\"\(fmt(legendX))\" y=\"\(fmt(top))\" width=\"10\" height=\"3\" fill=\"\(color)\"/>"
            svg += "<text x=\"\(fmt(legendX + 14))\" y=\"\(fmt(top + 5))\" font-size=\"10\" fill=\"#111827\">\(HTML.escape(line.name))</text>"
        }
        return svg + "</svg>"
    }

    /// Reference and live shares of each bin, side by side.
    static func histogram(bins: [String], reference: [Int], live: [Int], label: String, width: Int = 360, height: Int = 140) -> String {
        let left = 8.0, bottom = 18.0, top = 8.0
        let plotHeight = Double(height) - top - bottom
        let referenceTotal = max(reference.reduce(0, +), 1), liveTotal = max(live.reduce(0, +), 1)
        let shares = zip(reference, live).map { (Double($0) / Double(referenceTotal), Double($1) / Double(liveTotal)) }
        let highest = max(shares.map { max($0.0, $0.1) }.max() ?? 0, 1e-9)
        let slot = (Double(width) - left * 2) / Double(max(bins.count, 1))
        var svg =
            "<svg class=\"histogram\" role=\"img\" aria-label=\"\(HTML.escape(label))\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\">"
        for (index, (ref, now)) in shares.enumerated() {
            let x = left + slot * Double(index)
            let barWidth = max(slot / 2 - 1, 1)
            for (offset, share, color) in [(0.0, ref, "#9ca3af"), (barWidth, now, palette[0])] {
                let barHeight = share / highest * plotHeight
                svg +=
                    "<rect x=\"\(fmt(x + offset))\" y=\"\(fmt(top + plotHeight - barHeight))\" width=\"\(fmt(barWidth))\" height=\"\(fmt(barHeight))\" fill=\"\(color)\"/>"
            }
        }
        svg +=
            "<text x=\"\(fmt(left))\" y=\"\(height - 4)\" font-size=\"10\" fill=\"#4b5563\">grey: reference · blue: live (share of rows per bin)</text>"
        return svg + "</svg>"
    }

    /// Horizontal bars around zero, one per name (an explanation's attributions).
    static func bars(_ items: [(name: String, value: Double)], label: String, width: Int = 560) -> String {
        let rowHeight = 20.0, nameWidth = 200.0
        let height = Int(rowHeight * Double(items.count) + 10)
        let largest = max(items.map { abs($0.value) }.max() ?? 0, 1e-12)
        let half = (Double(width) - nameWidth - 8) / 2
        let zero = nameWidth + half
        var svg = "<svg class=\"bars\" role=\"img\" aria-label=\"\(HTML.escape(label))\" width=\"100%\" viewBox=\"0 0 \(width) \(height)\">"
        svg += "<line x1=\"\(fmt(zero))\" x2=\"\(fmt(zero))\" y1=\"0\" y2=\"\(height)\" stroke=\"#9ca3af\"/>"
        for (index, item) in items.enumerated() {
            let y = 4 + rowHeight * Double(index)
            let length = abs(item.value) / largest * (half - 4)
            let x = item.value >= 0 ? zero : zero - length
            svg +=
                "<text x=\"\(fmt(nameWidth - 6))\" y=\"\(fmt(y + 13))\" font-size=\"11\" text-anchor=\"end\" fill=\"#111827\">\(HTML.escape(item.name))</text>"
            svg +=
                "<rect x=\"\(fmt(x))\" y=\"\(fmt(y + 3))\" width=\"\(fmt(max(length, 0.5)))\" height=\"12\" fill=\"\(item.value >= 0 ? "#dc2626" : "#2563eb")\"/>"
        }
        return svg + "</svg>"
    }

    static func niceCeiling(_ value: Double) -> Double {
        guard value > 0 else { return 1 }
        let magnitude = pow(10, floor(log10(value)))
        for step in [1.0, 2, 2.5, 5, 10] where step * magnitude >= value { return step * magnitude }
        return 10 * magnitude
    }

    static func fmt(_ value: Double) -> String { String(format: "%.1f", value) }

    /// A number as a person reads it: up to 3 significant digits (thousands grouped), or `-`.
    static func number(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "-" }
        if value == value.rounded(), abs(value) < 1e15 { return grouped(Int(value)) }
        if abs(value) >= 100 { return grouped(Int(value.rounded())) }
        return String(format: abs(value) >= 1 ? "%.3g" : "%.3g", value)
    }

    static func grouped(_ value: Int) -> String {
        let digits = String(abs(value))
        var out = ""
        for (index, character) in digits.enumerated() {
            if index > 0, (digits.count - index) % 3 == 0 { out.append(",") }
            out.append(character)
        }
        return (value < 0 ? "-" : "") + out
    }
}

enum HTML {
    static func escape(_ text: String) -> String { DriftHTML.escape(text) }
}
