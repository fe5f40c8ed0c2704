import Foundation
import SQLKit
import TernCore

/// A batch job run inside a server (`POST /api/v1/jobs` or a schedule), as its history keeps it.
public struct JobRecord: Codable, Sendable, Equatable {
    public var id: String
    public var model: String
    public var version: Int?
    public var input: String
    public var output: String
    /// The options as the request gave them (JSON).
    public var options: String
    /// The schedule that started it, if one did.
    public var schedule: String?
    /// queued, running, succeeded, failed or cancelled.
    public var state: String
    public var rows: Int
    public var rejected: Int
    public var error: String?
    public var createdBy: String
    public var startedAt: String
    public var endedAt: String?

    public init(
        id: String, model: String, version: Int?, input: String, output: String, options: String, schedule: String?,
        state: String, rows: Int = 0, rejected: Int = 0, error: String? = nil, createdBy: String, startedAt: String,
        endedAt: String? = nil
    ) {
        self.id = id
        self.model = model
        self.version = version
        self.input = input
        self.output = output
        self.options = options
        self.schedule = schedule
        self.state = state
        self.rows = rows
        self.rejected = rejected
        self.error = error
        self.createdBy = createdBy
        self.startedAt = startedAt
        self.endedAt = endedAt
    }

    enum CodingKeys: String, CodingKey {
        case id, model, version, input, output, options, schedule, state, rows, rejected, error
        case createdBy = "created_by"
        case startedAt = "started_at"
        case endedAt = "ended_at"
    }
}

extension Registry {
    /// Writes a job's record (a new one, or its progress and end).
    public func saveJob(_ job: JobRecord) async throws(TernError) {
        try await run {
            try await self.sql.raw("DELETE FROM tern_jobs WHERE id = \(bind: job.id)").run()
            try await self.sql.raw(
                """
                INSERT INTO tern_jobs (id, model, version, input, output, options, schedule, state, rows, rejected, error,
                    created_by, started_at, ended_at)
                VALUES (\(bind: job.id), \(bind: job.model), \(bind: job.version), \(bind: job.input), \(bind: job.output),
                    \(bind: job.options), \(bind: job.schedule), \(bind: job.state), \(bind: job.rows), \(bind: job.rejected),
                    \(bind: job.error), \(bind: job.createdBy), \(bind: job.startedAt), \(bind: job.endedAt))
                """
            ).run()
        }
    }

    /// The jobs recorded, newest first.
    public func jobs(limit: Int = 100) async throws(TernError) -> [JobRecord] {
        try await run {
            try await self.sql.raw("SELECT * FROM tern_jobs ORDER BY started_at DESC, id DESC LIMIT \(bind: limit)").all().map { row in
                JobRecord(
                    id: try row.decode(column: "id", as: String.self), model: try row.decode(column: "model", as: String.self),
                    version: try row.decode(column: "version", as: Int?.self), input: try row.decode(column: "input", as: String.self),
                    output: try row.decode(column: "output", as: String.self), options: try row.decode(column: "options", as: String.self),
                    schedule: try row.decode(column: "schedule", as: String?.self), state: try row.decode(column: "state", as: String.self),
                    rows: try row.decode(column: "rows", as: Int.self), rejected: try row.decode(column: "rejected", as: Int.self),
                    error: try row.decode(column: "error", as: String?.self), createdBy: try row.decode(column: "created_by", as: String.self),
                    startedAt: try row.decode(column: "started_at", as: String.self), endedAt: try row.decode(column: "ended_at", as: String?.self))
            }
        }
    }
}
