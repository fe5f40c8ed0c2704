import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import TernBatch
import TernCore

/// `/api/v1/jobs`: translation only.
struct BatchJobRoutes {
    let jobs: BatchJobs

    func register(on router: ScopedRouter) {
        let api = router.group("/api/v1")
        api.post("/jobs", .admin) { request, context in
            let body = try await HTTPFrontEndConfiguration.collectBody(request, upTo: 1 << 20, flag: "the job's")
            let job = try StrictJSON.decode(
                JobRequest.self, from: Data(buffer: body), shape: #"{"model": "credit", "input": "in.csv", "output": "out.csv"}"#,
                known: JobRequest.fieldNames)
            return try json(BatchJobs.object(try await jobs.submit(job, actor: request.ternActor), nil), status: .created)
        }
        api.get("/jobs", .read) { _, _ in try json(["jobs": try await jobs.list()]) }
        api.get("/jobs/{id}", .read) { _, context in try json(try await jobs.status(try context.parameters.require("id"))) }
        api.delete("/jobs/{id}", .admin) { _, context in try json(try await jobs.cancel(try context.parameters.require("id"))) }
    }

    private func json(_ object: Any, status: HTTPResponse.Status = .ok) throws -> Response {
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
