/// CSV text as records of fields, read as RFC 4180 says: fields in double quotes may hold commas, line
/// breaks and doubled quotes; lines end with CRLF or LF; empty lines are skipped.
public enum CSVRecords {
    /// - Throws: ``TernError`` `invalidArgument` when a quoted field is never closed (naming its line).
    public static func parse(_ text: String, source: String = "CSV") throws(TernError) -> [[String]] {
        var records: [[String]] = []
        var field = ""
        var record: [String] = []
        var inQuotes = false
        var line = 1
        var iterator = text.unicodeScalars.makeIterator()
        var pending: Unicode.Scalar? = nil
        func endRecord() {
            record.append(field)
            field = ""
            if !(record.count == 1 && record[0].isEmpty) { records.append(record) }
            record = []
        }
        while let scalar = pending ?? iterator.next() {
            pending = nil
            if inQuotes {
                if scalar == "\"" {
                    let next = iterator.next()
                    if next == "\"" {
                        field.unicodeScalars.append("\"")
                    } else {
                        inQuotes = false
                        pending = next
                    }
                } else {
                    if scalar == "\n" { line += 1 }
                    field.unicodeScalars.append(scalar)
                }
                continue
            }
            switch scalar {
            case "\"" where field.isEmpty: inQuotes = true
            case ",":
                record.append(field)
                field = ""
            case "\r":
                let next = iterator.next()
                if next != "\n" { pending = next }
                endRecord()
                line += 1
            case "\n":
                endRecord()
                line += 1
            default: field.unicodeScalars.append(scalar)
            }
        }
        if inQuotes { throw .invalidArgument("\(source): a quoted field opened before line \(line) is never closed") }
        if !field.isEmpty || !record.isEmpty { endRecord() }
        return records
    }
}
