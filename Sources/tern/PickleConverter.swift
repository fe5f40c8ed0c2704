import Foundation
import TernCore

/// `tern pack model.joblib --sample data.csv`: converts a scikit-learn, XGBoost or LightGBM pickle to ONNX
/// with skl2onnx and onnxmltools, in a Python environment set up on first use (a venv under the data
/// folder, pinned versions), using the sample's columns for skl2onnx's DataFrame recipe (one `[N,1]` input
/// per column: strings for text columns, int64 and float32 for numbers), then verifies the ONNX model
/// against the pickle on the sample rows. Serving stays in Swift; Python runs only here.
struct PickleConverter {
    /// What `pip` installs into the environment: the converters and the libraries the pickles were made with.
    static let pins = [
        "numpy==2.4.6", "pandas==2.3.3", "scipy==1.17.1", "scikit-learn==1.9.1", "joblib==1.6.0", "skl2onnx==1.20.0",
        "onnxmltools==1.16.0", "onnx==1.23.2", "onnxruntime==1.31.1", "xgboost-cpu==3.2.0", "lightgbm==4.7.0",
    ]
    static let suffixes = [".joblib", ".pkl", ".pickle"]

    static func isPickle(_ path: String) -> Bool { suffixes.contains { path.lowercased().hasSuffix($0) } }

    /// What the conversion measured.
    struct Report: Decodable {
        var rows: Int
        var model: String
        var compared: String
        var maxAbsDiff: Double
        var labelMismatches: Int?
        /// Rows whose outputs differ by more than 1e-6.
        var rowsDiffering: Int
        var inputs: [[String]]
        var outputs: [String]
        /// The columns the model takes (one input each, or together in one matrix).
        var columns: Int

        /// How the ONNX model takes the columns, for the screen.
        var shape: String {
            if inputs.count == 1, inputs[0].first == "features", columns > 1 {
                return "one [N, \(columns)] input (features; the columns' names in its metadata)"
            }
            return "\(inputs.count) inputs, one per column (\(inputs.filter { $0.last?.hasPrefix("String") == true }.count) strings)"
        }

        enum CodingKeys: String, CodingKey {
            case rows, model, compared, inputs, outputs, columns
            case maxAbsDiff = "max_abs_diff"
            case labelMismatches = "label_mismatches"
            case rowsDiffering = "rows_over_1e-6"
        }
    }

    /// An interpreter that has the packages (`--python`), else the venv under the data folder.
    var python: String?
    var dataFolder: String

    var environment: String { dataFolder + "/python" }

    /// The interpreter to convert with: the given one, else the venv, created (and its pins installed) when
    /// missing or made with other pins.
    func interpreter() throws -> String {
        if let python { return python }
        let venvPython = environment + "/bin/python"
        let marker = environment + "/tern-pins.txt"
        let wanted = Self.pins.joined(separator: "\n") + "\n"
        if FileManager.default.isExecutableFile(atPath: venvPython), (try? String(contentsOfFile: marker, encoding: .utf8)) == wanted {
            return venvPython
        }
        FileHandle.standardError.write(
            Data(
                ("setting up a Python environment for converting pickles in \(environment) (once): "
                    + Self.pins.joined(separator: " ") + "\n").utf8))
        if !FileManager.default.isExecutableFile(atPath: venvPython) {
            try FileManager.default.createDirectory(atPath: dataFolder, withIntermediateDirectories: true)
            try run(["python3", "-m", "venv", environment], what: "python3 -m venv (install python3 and python3-venv)")
        }
        try run(
            [venvPython, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"] + Self.pins,
            what: "pip install of the converters (PyPI must be reachable once; or pass --python with an interpreter that has them)")
        try wanted.write(toFile: marker, atomically: true, encoding: .utf8)
        return venvPython
    }

    /// Converts `pickle` to `output` (ONNX) and verifies it on the sample's rows.
    func convert(pickle: String, sample: String, labelColumn: String, output: String) throws -> Report {
        let python = try interpreter()
        let script = FileManager.default.temporaryDirectory.appendingPathComponent("tern-convert-\(UUID().uuidString).py").path
        try Self.script.write(toFile: script, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: script) }
        let (status, out, err) = try capture([python, script, pickle, sample, output, labelColumn])
        guard status == 0 else {
            let message = err.split(separator: "\n").last.map(String.init) ?? "status \(status)"
            throw TernError.invalidArgument(
                "cannot convert \(pickle) to ONNX: \(message) (see docs/pickles.md for what converts; or export it yourself with skl2onnx)")
        }
        guard let line = out.split(separator: "\n").last, let report = try? JSONDecoder().decode(Report.self, from: Data(line.utf8)) else {
            throw TernError.internalError("the converter printed no report: \(out) \(err)")
        }
        return report
    }

    private func run(_ arguments: [String], what: String) throws {
        let (status, _, err) = try capture(arguments)
        guard status == 0 else { throw TernError.unavailable("\(what) failed (status \(status)): \(err.suffix(2000))") }
    }

    /// Runs a command: its status, standard output, and standard error (kept in a file, so that neither
    /// stream can fill a pipe while the other is read).
    private func capture(_ arguments: [String]) throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let errors = FileManager.default.temporaryDirectory.appendingPathComponent("tern-convert-\(UUID().uuidString).err")
        _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errors) }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = try FileHandle(forWritingTo: errors)
        do {
            try process.run()
        } catch {
            throw TernError.unavailable("cannot run \(arguments[0]): \(error)")
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let error = (try? Data(contentsOf: errors)) ?? Data()
        return (process.terminationStatus, String(decoding: output, as: UTF8.self), String(decoding: error, as: UTF8.self))
    }

    /// The conversion, run by the environment's Python: pickle, sample CSV, output path, label column.
    static let script = #"""
        import json
        import sys
        import warnings

        warnings.filterwarnings("ignore")
        pickle_path, sample_path, out_path, label = sys.argv[1:5]


        def fail(message):
            print(message, file=sys.stderr)
            sys.exit(2)


        import joblib
        import numpy as np
        import pandas as pd

        try:
            model = joblib.load(pickle_path)
        except Exception as error:
            fail(f"cannot load the pickle: {type(error).__name__}: {error}")
        frame = pd.read_csv(sample_path)
        if hasattr(model, "feature_names_in_"):
            columns = [str(c) for c in model.feature_names_in_]
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                fail(f"the sample has no column {', '.join(missing)}: the model was fitted on {', '.join(columns)}")
        else:
            columns = [c for c in frame.columns if c != label]
        frame = frame[columns]

        from skl2onnx import to_onnx, update_registered_converter
        from skl2onnx.common.data_types import BooleanTensorType, FloatTensorType, Int64TensorType, StringTensorType
        from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes, calculate_linear_regressor_output_shapes

        try:
            import xgboost
            from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
            update_registered_converter(xgboost.XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                        convert_xgboost, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
            update_registered_converter(xgboost.XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost)
        except ImportError:
            pass
        try:
            import lightgbm
            from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
            update_registered_converter(lightgbm.LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes,
                                        convert_lightgbm, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
            update_registered_converter(lightgbm.LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm)
        except ImportError:
            pass

        # The DataFrame recipe: one [N,1] input per column; strings for text columns, int64 and float32 for numbers.
        # A model that does not start with a ColumnTransformer takes one matrix: numbers only, one [N,k] input
        # named features, the columns' names kept in the model's feature_names metadata.
        from sklearn.compose import ColumnTransformer
        first = model.steps[0][1] if hasattr(model, "steps") else model
        matrix = not isinstance(first, ColumnTransformer) and all(pd.api.types.is_numeric_dtype(frame[c]) for c in columns)
        types, feed = [], {}
        if matrix:
            types.append(("features", FloatTensorType([None, len(columns)])))
            feed["features"] = frame[columns].to_numpy().astype(np.float32)
        for column in [] if matrix else columns:
            values = frame[[column]]
            dtype = frame[column].dtype
            if pd.api.types.is_bool_dtype(dtype):
                types.append((column, BooleanTensorType([None, 1])))
                feed[column] = values.to_numpy().astype(bool)
            elif pd.api.types.is_integer_dtype(dtype):
                types.append((column, Int64TensorType([None, 1])))
                feed[column] = values.to_numpy().astype(np.int64)
            elif pd.api.types.is_float_dtype(dtype):
                types.append((column, FloatTensorType([None, 1])))
                feed[column] = values.to_numpy().astype(np.float32)
            else:
                frame[column] = frame[column].astype(str)
                types.append((column, StringTensorType([None, 1])))
                feed[column] = frame[[column]].to_numpy().astype(object)

        final = model.steps[-1][1] if hasattr(model, "steps") else model
        classifier = hasattr(final, "predict_proba")
        options = {id(final): {"zipmap": False}} if classifier else {}


        def steps(node):
            yield node
            for child in getattr(node, "steps", []):
                yield from steps(child[1])
            for child in getattr(node, "transformers_", []):
                yield from steps(child[1])
            for child in getattr(node, "transformer_list", []):
                yield from steps(child[1])


        # StandardScaler as scikit-learn computes it: in float64, rounded to float32 once at the end ("div_cast";
        # skl2onnx's default Scaler computes in float32, and a scaled value 1 ulp off a tree's split threshold
        # takes the other branch: XGBoost places thresholds at data values, so many rows sit on one).
        from sklearn.preprocessing import StandardScaler
        scalers = [step for step in steps(model) if isinstance(step, StandardScaler)]
        for scaler in scalers:
            options[id(scaler)] = {"div": "div_cast"}
        options = options or None
        try:
            onx = to_onnx(model, initial_types=types, target_opset={"": 15, "ai.onnx.ml": 3}, options=options)
        except Exception as error:
            fail(f"skl2onnx cannot convert this {type(model).__name__}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        # skl2onnx writes the float64 mean rounded to float32: the exact constants back.
        import onnx
        from onnx import numpy_helper
        constants = {i.name: i for i in onx.graph.initializer}
        for node in onx.graph.node:
            if node.op_type in ("Sub", "Div") and len(node.input) == 2 and node.input[1] in constants:
                value = numpy_helper.to_array(constants[node.input[1]])
                for scaler in scalers:
                    exact = getattr(scaler, "mean_" if node.op_type == "Sub" else "scale_", None)
                    if exact is None:
                        continue
                    exact = np.asarray(exact, dtype=np.float64)
                    if value.dtype == np.float64 and value.shape == exact.shape and np.allclose(value, exact, rtol=1e-6, atol=0):
                        constants[node.input[1]].CopyFrom(numpy_helper.from_array(exact, node.input[1]))
                        break
        if matrix:
            onnx.helper.set_model_props(onx, {"feature_names": ",".join(columns)})
        data = onx.SerializeToString()
        with open(out_path, "wb") as f:
            f.write(data)

        import onnxruntime
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        answers = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))
        report = {"rows": len(frame), "columns": len(columns), "inputs": [[c, t.__class__.__name__] for c, t in types], "outputs": list(answers)}
        if classifier:
            expected = np.asarray(model.predict_proba(frame), dtype=np.float64)
            [name] = [n for n, v in answers.items() if np.asarray(v).ndim == 2 and np.asarray(v).shape[1] == expected.shape[1]][:1] or [None]
            if name is None:
                fail(f"the converted model has no probabilities output to compare with predict_proba (outputs: {', '.join(answers)})")
            got = np.asarray(answers[name], dtype=np.float64)
            labels = [n for n in answers if n != name]
            if labels:
                predicted = np.asarray(model.predict(frame)).astype(str).reshape(-1)
                report["label_mismatches"] = int((np.asarray(answers[labels[0]]).astype(str).reshape(-1) != predicted).sum())
            report["compared"] = "predict_proba"
        else:
            expected = np.asarray(model.predict(frame), dtype=np.float64).reshape(len(frame), -1)
            got = np.asarray(list(answers.values())[0], dtype=np.float64).reshape(len(frame), -1)
            report["compared"] = "predict"
        difference = np.abs(got - expected).max(axis=1) if len(frame) else np.zeros(0)
        report["max_abs_diff"] = float(difference.max()) if len(frame) else 0.0
        report["rows_over_1e-6"] = int((difference > 1e-6).sum())
        report["model"] = type(final).__name__
        print(json.dumps(report))
        """#
}
