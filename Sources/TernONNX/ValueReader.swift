import CONNXRuntime
import TernCore

/// Copies ONNX Runtime output values into Tern tensors, on typed paths (no boxing).
struct ValueReader {
    let runtime: ONNXRuntime

    func tensor(_ value: OpaquePointer, name: String) throws(TernError) -> Tensor {
        let api = runtime.api
        var info: OpaquePointer?
        try runtime.check(api.GetTensorTypeAndShape(value, &info))
        guard let info else { throw .internalError("output '\(name)' has no type information") }
        defer { api.ReleaseTensorTypeAndShapeInfo(info) }
        let (type, shape) = try runtime.elementTypeAndShape(info)
        let count = shape.reduce(1, *)
        guard let datatype = ElementType.dataType(onnx: type) else {
            throw .internalError("output '\(name)' has element type \(ElementType.name(onnx: type))")
        }
        if datatype == .bytes {
            return Tensor(unchecked: name, datatype: .bytes, shape: shape, contents: .strings(try strings(value, count: count)))
        }
        let byteCount = count * datatype.byteSize!
        var data: UnsafeMutableRawPointer?
        try runtime.check(api.GetTensorMutableData(value, &data))
        let bytes: [UInt8]
        if let data, byteCount > 0 {
            bytes = Array(UnsafeRawBufferPointer(start: data, count: byteCount))
        } else {
            bytes = []
        }
        return Tensor(unchecked: name, datatype: datatype, shape: shape, contents: .raw(bytes))
    }

    private func strings(_ value: OpaquePointer, count: Int) throws(TernError) -> [[UInt8]] {
        guard count > 0 else { return [] }
        let api = runtime.api
        var total = 0
        try runtime.check(api.GetStringTensorDataLength(value, &total))
        var buffer = [UInt8](repeating: 0, count: max(1, total))
        var offsets = [Int](repeating: 0, count: count)
        let status = buffer.withUnsafeMutableBytes { bytes in
            offsets.withUnsafeMutableBufferPointer { offsetBuffer in
                api.GetStringTensorContent(value, bytes.baseAddress, total, offsetBuffer.baseAddress, count)
            }
        }
        try runtime.check(status)
        var result: [[UInt8]] = []
        result.reserveCapacity(count)
        for index in 0..<count {
            let start = offsets[index]
            let end = index + 1 < count ? offsets[index + 1] : total
            result.append(Array(buffer[start..<end]))
        }
        return result
    }

    /// Reads seq(map(key, value)) (skl2onnx's ZipMap) as a [rows, classes] tensor, the classes in the order
    /// of the first row's map (ZipMap keeps the model's class order).
    func sequenceOfMaps(_ value: OpaquePointer, name: String) throws(TernError) -> Tensor {
        let api = runtime.api
        var rows = 0
        try runtime.check(api.GetValueCount(value, &rows))
        var bytes: [UInt8] = []
        var classes = -1
        var datatype = DataType.fp32
        for row in 0..<rows {
            var map: OpaquePointer?
            try runtime.check(api.GetValue(value, Int32(row), runtime.allocator, &map))
            guard let map else { throw .internalError("output '\(name)': row \(row) is missing") }
            defer { api.ReleaseValue(map) }
            var values: OpaquePointer?
            try runtime.check(api.GetValue(map, 1, runtime.allocator, &values))
            guard let values else { throw .internalError("output '\(name)': row \(row) has no values") }
            defer { api.ReleaseValue(values) }
            let rowTensor = try tensor(values, name: name)
            guard case .raw(let rowBytes) = rowTensor.contents else {
                throw .internalError("output '\(name)' holds non-numeric map values")
            }
            if classes < 0 {
                classes = rowTensor.elementCount
                datatype = rowTensor.datatype
                bytes.reserveCapacity(rows * rowBytes.count)
            } else if classes != rowTensor.elementCount {
                throw .internalError("output '\(name)': rows have different numbers of classes")
            }
            bytes.append(contentsOf: rowBytes)
        }
        return Tensor(unchecked: name, datatype: datatype, shape: [rows, max(classes, 0)], contents: .raw(bytes))
    }
}
