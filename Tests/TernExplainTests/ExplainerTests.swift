import Foundation
import Testing
@testable import TernExplain
import TernTestSupport

/// Tern's attributions against shap's own, on models scikit-learn, XGBoost and LightGBM trained and their
/// converters exported (tools/make-explain-fixtures.py wrote shap's values beside each model).
struct ExplainFixture: Sendable, CustomStringConvertible {
    let name: String
    let structure: ModelStructure
    let rows: [[Double]]
    let background: [[Double]]
    /// method -> (values[row][feature][output], base)
    let expected: [String: ([[[Double]]], [Double])]
    let onnxruntime: [String: [[Double]]]

    var description: String { name }

    static let folder = Fixtures.repositoryRoot + "/Tests/Fixtures/explain"

    static var names: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    }

    static func load(_ name: String) throws -> ExplainFixture {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name)/shap.json"))
        let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let model = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name)/model.onnx"))
        var expected: [String: ([[[Double]]], [Double])] = [:]
        for (method, body) in document["methods"] as? [String: [String: Any]] ?? [:] {
            expected[method] = (body["values"] as? [[[Double]]] ?? [], body["base"] as? [Double] ?? [])
        }
        var outputs: [String: [[Double]]] = [:]
        for (output, value) in document["onnxruntime"] as? [String: Any] ?? [:] {
            if let matrix = value as? [[Double]] { outputs[output] = matrix } else if let list = value as? [Double] { outputs[output] = list.map { [$0] } }
        }
        return ExplainFixture(
            name: name, structure: try ModelStructure.read(onnx: model), rows: document["rows"] as? [[Double]] ?? [],
            background: document["background"] as? [[Double]] ?? [], expected: expected, onnxruntime: outputs)
    }
}

@Test(arguments: ExplainFixture.names)
func marginsReproduceOnnxRuntime(name: String) throws {
    let fixture = try ExplainFixture.load(name)
    let attributions = try Explainer.explain(fixture.structure, rows: fixture.rows, background: fixture.background)
    let (output, transform): (String, ([Double]) -> [Double]) = switch attributions.link {
    case .identity: (fixture.onnxruntime["probabilities"] != nil ? "probabilities" : "variable", { m in
        fixture.onnxruntime["probabilities"] != nil && m.count == 1 ? [1 - m[0], m[0]] : m
    })
    case .logistic: ("probabilities", { m in let p = 1 / (1 + exp(-m[0])); return [1 - p, p] })
    case .softmax: ("probabilities", { m in let e = m.map { exp($0 - m.max()!) }; return e.map { $0 / e.reduce(0, +) } })
    }
    let scores = try #require(fixture.onnxruntime[output], "onnxruntime's \(output)")
    for (row, margins) in attributions.margins.enumerated() {
        let mine = transform(margins)
        for (a, b) in zip(mine, scores[row]) { #expect(abs(a - b) < 1e-5 * max(1, abs(b)), "\(name) row \(row): \(mine) vs \(scores[row])") }
    }
}

@Test(arguments: ExplainFixture.names)
func attributionsEqualShaps(name: String) throws {
    let fixture = try ExplainFixture.load(name)
    for (method, (values, base)) in fixture.expected.sorted(by: { $0.key < $1.key }) {
        let chosen = try #require(Attributions.Method(rawValue: method))
        let attributions = try Explainer.explain(fixture.structure, rows: fixture.rows, background: fixture.background, method: chosen)
        // A binary classifier's one output is shap's last (a random forest's class-1 probability).
        let shift = base.count - attributions.outputs
        #expect(shift == 0 || (shift == 1 && attributions.outputs == 1), "\(name) \(method): outputs")
        // ONNX stores thresholds and leaf values as float32: a regressor's margins in the thousands carry
        // that rounding (shap reads the native float64 model).
        let scale = attributions.margins.flatMap { $0 }.map(abs).max() ?? 1
        let tolerance = max(1e-6, 1e-7 * scale)
        for o in 0..<attributions.outputs {
            #expect(abs(attributions.base[o] - base[o + shift]) < tolerance, "\(name) \(method) base \(o): \(attributions.base[o]) vs shap \(base[o + shift])")
        }
        var worst = 0.0
        for row in fixture.rows.indices {
            for f in 0..<attributions.featureCount {
                for o in 0..<attributions.outputs {
                    worst = max(worst, abs(attributions.value(row: row, feature: f, output: o) - values[row][f][o + shift]))
                }
            }
            // Additivity: base + sum = margin.
            for o in 0..<attributions.outputs {
                let sum = (0..<attributions.featureCount).reduce(attributions.base[o]) { $0 + attributions.value(row: row, feature: $1, output: o) }
                #expect(abs(sum - attributions.margins[row][o]) < 1e-5, "\(name) \(method) row \(row): additivity")
            }
        }
        #expect(worst < tolerance, "\(name) \(method): largest difference from shap \(worst)")
    }
}

@Test func aModelWithoutAnExactExplainerSaysWhereTheReaderStopped() throws {
    let mlp = try Data(contentsOf: URL(fileURLWithPath: Fixtures.modelPath("mlp")))
    #expect(throws: (any Error).self) { try ModelStructure.read(onnx: mlp) }
    do {
        _ = try ModelStructure.read(onnx: mlp)
    } catch {
        #expect("\(error)".contains("operator"), "\(error)")
    }
}
