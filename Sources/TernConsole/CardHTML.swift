import Foundation

/// The Markdown a bundle's model card uses (headings, paragraphs, pipe tables, `code`, **bold**) as HTML,
/// every text escaped. Not a general Markdown renderer: the card is Tern's own output (`ModelCard`).
enum CardHTML {
    static func render(_ markdown: String) -> String {
        var html = ""
        var paragraph: [String] = []
        var table: [[String]] = []

        func flushParagraph() {
            if !paragraph.isEmpty { html += "<p>" + inline(paragraph.joined(separator: " ")) + "</p>\n" }
            paragraph = []
        }
        func flushTable() {
            guard !table.isEmpty else { return }
            let header = table[0]
            let rows = table.dropFirst().filter { row in !row.allSatisfy { $0.allSatisfy { $0 == "-" || $0 == ":" } } }
            html += "<div class=\"scroll\"><table>"
            if header.contains(where: { !$0.isEmpty }) {
                html += "<thead><tr>" + header.map { "<th scope=\"col\">\(inline($0))</th>" }.joined() + "</tr></thead>"
            }
            html += "<tbody>"
            for row in rows {
                html +=
                    "<tr>"
                    + row.enumerated().map { index, cell in
                        index == 0 ? "<th scope=\"row\">\(inline(cell))</th>" : "<td>\(inline(cell))</td>"
                    }.joined() + "</tr>"
            }
            html += "</tbody></table></div>\n"
            table = []
        }

        for raw in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasPrefix("|") {
                flushParagraph()
                var cells = line.split(separator: "|", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                if cells.first == "" { cells.removeFirst() }
                if cells.last == "" { cells.removeLast() }
                table.append(cells)
                continue
            }
            flushTable()
            if line.isEmpty {
                flushParagraph()
            } else if let level = heading(line) {
                flushParagraph()
                // The page has its own h1 and h2: the card's headings sit below them.
                let tag = "h\(min(level + 2, 6))"
                html += "<\(tag)>" + inline(String(line.drop { $0 == "#" }).trimmingCharacters(in: .whitespaces)) + "</\(tag)>\n"
            } else {
                paragraph.append(line)
            }
        }
        flushTable()
        flushParagraph()
        return html
    }

    private static func heading(_ line: String) -> Int? {
        let hashes = line.prefix { $0 == "#" }.count
        guard hashes > 0, hashes <= 6, line.dropFirst(hashes).first == " " else { return nil }
        return hashes
    }

    /// `code` and **bold**, the rest escaped.
    static func inline(_ text: String) -> String {
        var out = ""
        var rest = Substring(text)
        while let marker = rest.firstIndex(where: { $0 == "`" || $0 == "*" }) {
            out += HTML.escape(String(rest[..<marker]))
            if rest[marker] == "`", let end = rest[rest.index(after: marker)...].firstIndex(of: "`") {
                out += "<code>" + HTML.escape(String(rest[rest.index(after: marker)..<end])) + "</code>"
                rest = rest[rest.index(after: end)...]
            } else if rest[marker...].hasPrefix("**"), let end = rest[rest.index(marker, offsetBy: 2)...].range(of: "**") {
                out += "<strong>" + HTML.escape(String(rest[rest.index(marker, offsetBy: 2)..<end.lowerBound])) + "</strong>"
                rest = rest[end.upperBound...]
            } else {
                out += HTML.escape(String(rest[marker]))
                rest = rest[rest.index(after: marker)...]
            }
        }
        return out + HTML.escape(String(rest))
    }
}
