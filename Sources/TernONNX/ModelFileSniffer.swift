import Foundation

/// Recognises the model files people hand Tern before they have converted them to ONNX, from their first
/// bytes alone (nothing in them is ever loaded: a pickle runs code when it is loaded), and says how to
/// convert each.
public enum ModelFileSniffer {
    /// Why `path` is not an ONNX model and how to make one, or nil when it may be one.
    public static func notONNX(_ path: String) -> String? {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return nil }
        if isDirectory.boolValue {
            if FileManager.default.fileExists(atPath: path + "/saved_model.pb") { return explain(path, .savedModel) }
            return "\(path) is a folder, not an ONNX model file; give the model.onnx inside it"
        }
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let head = [UInt8]((try? handle.read(upToCount: 4096)) ?? Data())
        guard let kind = kind(of: head, name: URL(fileURLWithPath: path).lastPathComponent) else { return nil }
        return explain(path, kind)
    }

    enum Kind {
        case pickle, joblibCompressed, pytorch, savedModel, keras, ternBundle, xgboostJSON, lightgbmText, zip
    }

    static func kind(of head: [UInt8], name: String) -> Kind? {
        func starts(_ bytes: [UInt8]) -> Bool { head.starts(with: bytes) }
        func contains(_ text: String) -> Bool {
            let needle = Array(text.utf8)
            guard head.count >= needle.count else { return false }
            return (0...(head.count - needle.count)).contains { head[$0..<($0 + needle.count)].elementsEqual(needle) }
        }
        if head.count >= 2, head[0] == 0x80, (2...5).contains(head[1]) { return .pickle }  // PROTO opcode
        if starts([0x5A, 0x46]) || (name.hasSuffix(".joblib") || name.hasSuffix(".pkl")) && starts([0x78]) {
            return .joblibCompressed  // joblib's zlib container ("ZF") or a zlib stream
        }
        if starts([0x50, 0x4B, 0x03, 0x04]) {
            if contains("tern.json") { return .ternBundle }
            if contains("data.pkl") || contains("/data/") || contains("version") && contains("archive/") { return .pytorch }
            return .zip
        }
        if starts([0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A]) { return .keras }  // HDF5
        if name == "saved_model.pb" { return .savedModel }
        if starts(Array("tree\n".utf8)) || starts(Array("tree\r\n".utf8)) { return .lightgbmText }
        if starts(Array("{\"learner\"".utf8)) || contains("\"learner\":") && starts([UInt8(ascii: "{")]) { return .xgboostJSON }
        return nil
    }

    /// The file's name as `tern pack` takes a pickle (its suffix says so).
    static func pickleName(_ path: String) -> String {
        let name = URL(fileURLWithPath: path).lastPathComponent
        return [".pkl", ".joblib", ".pickle"].contains { name.lowercased().hasSuffix($0) } ? name : "model.pkl (the file renamed)"
    }

    static func explain(_ path: String, _ kind: Kind) -> String {
        let what: String
        let recipe: String
        switch kind {
        case .pickle, .joblibCompressed:
            what = "a Python pickle (pickle or joblib; Tern never loads one, as loading it runs code)"
            recipe =
                "convert it with tern pack (scikit-learn, XGBoost and LightGBM pipelines; checked against the pickle): "
                + "tern pack \(pickleName(path)) --sample data.csv --name NAME -o NAME.tern, then tern push NAME.tern; "
                + "or export it yourself with skl2onnx's DataFrame recipe, one [N,1] input per column: "
                + "to_onnx(model, initial_types=[(c, StringTensorType([None, 1]) if X[c].dtype == object else "
                + "FloatTensorType([None, 1])) for c in X.columns]) (from skl2onnx.common.data_types)"
        case .pytorch:
            what = "a PyTorch checkpoint"
            recipe =
                "export it with torch.onnx.export(model, example_input, 'model.onnx', input_names=['features'], "
                + "dynamic_axes={'features': {0: 'batch'}})"
        case .savedModel, .keras:
            what = kind == .keras ? "a Keras HDF5 model" : "a TensorFlow SavedModel"
            recipe =
                "convert it with tf2onnx: python -m tf2onnx.convert --saved-model DIR --output model.onnx "
                + "(or tf2onnx.convert.from_keras(model) for Keras)"
        case .ternBundle:
            what = "a Tern bundle (from tern pack)"
            recipe = "register it with tern push, then serve the registry with tern serve --data; tern inspect shows what it holds"
        case .xgboostJSON:
            what = "an XGBoost model in its own JSON format"
            recipe = "load it in Python (xgboost.Booster(model_file=...)) and convert it with onnxmltools.convert_xgboost"
        case .lightgbmText:
            what = "a LightGBM text model"
            recipe = "load it in Python (lightgbm.Booster(model_file=...)) and convert it with onnxmltools.convert_lightgbm"
        case .zip:
            what = "a zip archive"
            recipe = "give the .onnx file itself"
        }
        return "\(path) is not an ONNX model but \(what). To serve it, \(recipe)"
    }
}
