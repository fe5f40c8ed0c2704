import Foundation
import TernCore

/// A CSV file with a header row, parsed as RFC 4180 (quoted fields, doubled quotes, CRLF or LF).
public struct CSVTable: Sendable, Equatable {
    public var columns: [String]
    public var rows: [[String]]

    public init(columns: [String], rows: [[String]]) {
        self.columns = columns
        self.rows = rows
    }

    /// - Throws: ``TernError`` `invalidArgument` naming the line: no header, a row of the wrong width, an
    ///   unclosed quote, duplicate column names.
    public init(text: String, source: String = "CSV") throws(TernError) {
        let records = try CSVRecords.parse(text, source: source)
        guard let header = records.first else { throw .invalidArgument("\(source) is empty; expected a header row") }
        let columns = header.map { $0.trimmingCharacters(in: .whitespaces) }
        var seen = Set<String>()
        for name in columns {
            guard !name.isEmpty else { throw .invalidArgument("\(source): the header has an empty column name") }
            guard seen.insert(name).inserted else { throw .invalidArgument("\(source): column '\(name)' appears twice in the header") }
        }
        let rows = Array(records.dropFirst())
        if let bad = rows.firstIndex(where: { $0.count != columns.count }) {
            throw .invalidArgument("\(source): row \(bad + 1) has \(rows[bad].count) values; the header has \(columns.count) columns")
        }
        guard !rows.isEmpty else { throw .invalidArgument("\(source) has a header but no rows") }
        self.columns = columns
        self.rows = rows
    }

    public func index(of column: String) -> Int? { columns.firstIndex(of: column) }

    /// The values of one column.
    public func column(_ index: Int) -> [String] { rows.map { $0[index] } }

    /// The table without some columns.
    public func dropping(_ names: Set<String>) -> CSVTable {
        let keep = columns.indices.filter { !names.contains(columns[$0]) }
        return CSVTable(columns: keep.map { columns[$0] }, rows: rows.map { row in keep.map { row[$0] } })
    }
}
