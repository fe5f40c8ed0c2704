import CONNXRuntime
import Foundation
import TernCore

#if canImport(Glibc)
    import Glibc
#endif

/// An error reported by ONNX Runtime, carrying its own code and message. Wrapped as the `cause` of a
/// ``TernError``.
public struct ONNXRuntimeError: Error, Sendable, CustomStringConvertible {
    /// ONNX Runtime's `OrtErrorCode` value (2 = invalid argument, 3 = no such file, 7 = invalid protobuf, ...).
    public var code: Int32
    public var message: String
    public var description: String { "ONNX Runtime error \(code): \(message)" }
}

/// ONNX Runtime opened at run time: the API table, one process-wide environment, CPU memory info and the
/// default allocator.
///
/// - Important: Open it once per process and keep it: the library is never closed.
public final class ONNXRuntime: @unchecked Sendable {
    // @unchecked Sendable: every stored property is a `let` set in init; the API table is immutable, and
    // ONNX Runtime documents OrtEnv, the CPU memory info and the default allocator as thread-safe.
    let api: TernOrtApi
    let env: OpaquePointer
    let cpuMemory: OpaquePointer
    let allocator: OpaquePointer
    /// Where the library was found.
    public let libraryPath: String
    /// The library's version string, such as "1.31.1".
    public let version: String

    /// The API version Tern asks for: every function Tern calls exists since API 8, so older libraries work too.
    static let apiVersion: UInt32 = 8

    /// The library's file name pattern, for error messages and search.
    public static let libraryNames = ["libonnxruntime.so", "libonnxruntime.so.1", "libonnxruntime.dylib"]

    /// How to install ONNX Runtime, in one line, for "not found" errors.
    public static let installHint =
        "ONNX Runtime not found: run `scripts/install-onnxruntime.sh` (installs the pinned onnxruntime wheel's "
        + "library into .tern/onnxruntime), or pass --onnxruntime PATH, or set TERN_ONNXRUNTIME_LIB"

    /// Candidate library paths in lookup order: the explicit path (flag), the environment variable, the
    /// project-local install folders, then bare names for the system loader.
    public static func candidates(
        explicitPath: String?, environmentPath: String?, localInstallDirectories: [String]
    ) -> [String] {
        if let explicitPath { return [explicitPath] }
        if let environmentPath, !environmentPath.isEmpty { return [environmentPath] }
        var result: [String] = []
        for directory in localInstallDirectories {
            for name in libraryNames { result.append(directory + "/" + name) }
        }
        result.append(contentsOf: libraryNames)
        return result
    }

    /// ONNX Runtime's official Linux and macOS builds (the PyPI wheel's library among them) send usage
    /// telemetry to Microsoft and keep a device id under ~/.cache/Microsoft/DeveloperTools unless
    /// `ORT_DISABLE_TELEMETRY=1` is set before the environment is created. A server scoring applicants' data
    /// calls out only when its operator says so: this sets it unless it is set (`ORT_DISABLE_TELEMETRY=0`
    /// leaves it to ONNX Runtime). Child processes inherit it (the pickle converter's onnxruntime).
    public static func keepTelemetryOff() {
        setenv("ORT_DISABLE_TELEMETRY", "1", 0)
    }

    /// Opens the first candidate that loads.
    ///
    /// - Throws: ``TernError`` with code `runtimeNotFound` and ``installHint`` when none loads; when an
    ///   explicitly named file exists but fails to load, the loader's reason is included.
    public static func open(candidates: [String]) throws(TernError) -> ONNXRuntime {
        keepTelemetryOff()
        var reasons: [String] = []
        for path in candidates {
            let isBareName = !path.contains("/")
            if !isBareName && !FileManager.default.fileExists(atPath: path) { continue }
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
                if !isBareName, let reason = dlerror() { reasons.append(String(cString: reason)) }
                continue
            }
            guard let symbol = dlsym(handle, "OrtGetApiBase") else {
                reasons.append("\(path) does not export OrtGetApiBase: not an ONNX Runtime library")
                continue
            }
            let getApiBase = unsafeBitCast(symbol, to: TernOrtGetApiBaseFunction.self)
            guard let base = getApiBase(), let apiPointer = base.pointee.GetApi(apiVersion) else {
                reasons.append("\(path) does not offer ONNX Runtime C API version \(apiVersion)")
                continue
            }
            let version = String(cString: base.pointee.GetVersionString())
            var resolved = path
            if isBareName { resolved = "\(path) (system loader)" }
            return try ONNXRuntime(api: apiPointer.pointee, libraryPath: resolved, version: version)
        }
        let detail = reasons.isEmpty ? "" : " (" + reasons.joined(separator: "; ") + ")"
        throw TernError(.runtimeNotFound, installHint + detail)
    }

    private init(api: TernOrtApi, libraryPath: String, version: String) throws(TernError) {
        self.api = api
        self.libraryPath = libraryPath
        self.version = version
        var env: OpaquePointer?
        try Self.check(api, api.CreateEnv(3 /* ORT_LOGGING_LEVEL_ERROR */, "tern", &env))
        var memory: OpaquePointer?
        try Self.check(api, api.CreateCpuMemoryInfo(0 /* OrtDeviceAllocator */, 0 /* OrtMemTypeDefault */, &memory))
        var allocator: OpaquePointer?
        try Self.check(api, api.GetAllocatorWithDefaultOptions(&allocator))
        guard let env, let memory, let allocator else {
            throw .internalError("ONNX Runtime returned no environment or allocator")
        }
        self.env = env
        self.cpuMemory = memory
        self.allocator = allocator
    }

    /// The execution providers this library offers (the CPU wheel: CPU and Azure).
    public func availableProviders() throws(TernError) -> [String] {
        var names: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?
        var count: Int32 = 0
        try check(api.GetAvailableProviders(&names, &count))
        defer { _ = api.ReleaseAvailableProviders(names, count) }
        return (0..<Int(count)).compactMap { index in names?[index].map { String(cString: $0) } }
    }

    // MARK: - Status handling

    /// Turns a non-NULL status into a ``TernError`` and releases it. ONNX Runtime's invalid-argument errors
    /// become `invalidArgument` (the input was at fault); others are internal errors.
    func check(_ status: OpaquePointer?, _ context: @autoclosure () -> String = "") throws(TernError) {
        try Self.check(api, status, context())
    }

    static func check(_ api: TernOrtApi, _ status: OpaquePointer?, _ context: @autoclosure () -> String = "")
        throws(TernError)
    {
        guard let status else { return }
        let code = api.GetErrorCode(status)
        let message = String(cString: api.GetErrorMessage(status))
        api.ReleaseStatus(status)
        let cause = ONNXRuntimeError(code: code, message: message)
        let prefix = context()
        let text = prefix.isEmpty ? message : "\(prefix): \(message)"
        switch code {
        case 2: throw TernError(.invalidArgument, text, cause: cause)
        case 3: throw TernError(.notFound, text, cause: cause)
        default: throw TernError(.internalError, text, cause: cause)
        }
    }

    /// The element type code and dimensions of a tensor type-and-shape info (-1 for dynamic dimensions).
    func elementTypeAndShape(_ info: OpaquePointer) throws(TernError) -> (type: Int32, shape: [Int]) {
        var type: Int32 = 0
        try check(api.GetTensorElementType(info, &type))
        var rank = 0
        try check(api.GetDimensionsCount(info, &rank))
        var dims = [Int64](repeating: 0, count: rank)
        try dims.withUnsafeMutableBufferPointer { buffer throws(TernError) in
            try check(api.GetDimensions(info, buffer.baseAddress, rank))
        }
        return (type, dims.map { $0 < 0 ? -1 : Int($0) })
    }

    /// Copies a string ONNX Runtime allocated with the default allocator, and frees it.
    func takeString(_ pointer: UnsafeMutablePointer<CChar>?) -> String {
        guard let pointer else { return "" }
        defer { _ = api.AllocatorFree(allocator, pointer) }
        return String(cString: pointer)
    }
}
