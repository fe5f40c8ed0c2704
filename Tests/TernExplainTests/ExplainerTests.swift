import Foundation
import TernTestSupport
import Testing

@testable import TernExplain

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
            if let matrix = value as? [[Double]] {
                outputs[output] = matrix
            } else if let list = value as? [Double] {
                outputs[output] = list.map { [$0] }
            }
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
    let (output, transform): (String, ([Double]) -> [Double]) =
        switch attributions.link {
        case .identity:
            (
                fixture.onnxruntime["probabilities"] != nil ? "probabilities" : "variable",
                { m in
                    fixture.onnxruntime["probabilities"] != nil && m.count == 1 ? [1 - m[0], m[0]] : m
                }
            )
        case .logistic:
            (
                "probabilities",
                { m in
                    let p = 1 / (1 + exp(-m[0]))
                    return [1 - p, p]
                }
            )
        case .softmax:
            (
                "probabilities",
                { m in
                    let e = m.map { exp($0 - m.max()!) }
                    return e.map { $0 / e.reduce(0, +) }
                }
            )
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
            #expect(
                abs(attributions.base[o] - base[o + shift]) < tolerance,
                "\(name) \(method) base \(o): \(attributions.base[o]) vs shap \(base[o + shift])")
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

/// KernelSHAP run on the trees' own margins: with every coalition valued (10 features, 1,022 coalitions)
/// it is the exact interventional Shapley value, so it equals interventional TreeSHAP to rounding; with
/// fewer samples than coalitions, each estimate lies within a few of its standard errors.
@Test(arguments: ExplainFixture.names)
func kernelSHAPMatchesExactTreeSHAP(name: String) async throws {
    let fixture = try ExplainFixture.load(name)
    guard case .trees(let trees) = fixture.structure else { return }
    let rows = Array(fixture.rows.prefix(4)), background = Array(fixture.background.prefix(30))
    let exact = try Explainer.explain(fixture.structure, rows: rows, background: background, method: .interventional)
    let predict: KernelSHAP.Predict = { flat, count in
        (0..<count).flatMap { r in trees.margins(Array(flat[(r * trees.featureCount)..<((r + 1) * trees.featureCount)])) }
    }
    let scale = max(1, exact.margins.flatMap { $0 }.map(abs).max() ?? 1)
    let enumerated = try await KernelSHAP(samples: 2048).explain(rows, background: background, outputs: trees.outputs, predict: predict)
    #expect(enumerated.errors?.flatMap { $0 }.allSatisfy { $0 == 0 } == true)
    for r in rows.indices {
        for i in exact.values[r].indices {
            #expect(abs(enumerated.values[r][i] - exact.values[r][i]) < 1e-9 * scale, "\(name) row \(r) value \(i)")
        }
        for o in 0..<trees.outputs { #expect(abs(enumerated.margins[r][o] - exact.margins[r][o]) < 1e-9 * scale) }
    }
    for o in 0..<trees.outputs { #expect(abs(enumerated.base[o] - exact.base[o]) < 1e-9 * scale) }
    // Sampled: 256 coalitions of 1,022. Additivity still holds exactly (the fit is constrained).
    let sampled = try await KernelSHAP(samples: 256, seed: 7).explain(rows, background: background, outputs: trees.outputs, predict: predict)
    let errors = try #require(sampled.errors)
    var outside = 0, total = 0
    for r in rows.indices {
        for o in 0..<trees.outputs {
            let sum = (0..<sampled.featureCount).reduce(sampled.base[o]) { $0 + sampled.value(row: r, feature: $1, output: o) }
            #expect(abs(sum - sampled.margins[r][o]) < 1e-9 * scale, "\(name) row \(r): additivity")
        }
        for i in exact.values[r].indices {
            total += 1
            if abs(sampled.values[r][i] - exact.values[r][i]) > 4 * errors[r][i] + 1e-6 * scale { outside += 1 }
        }
    }
    // Four standard errors: a normal estimate falls outside once in 15,000; allow a couple for the
    // estimated errors' own noise.
    #expect(outside <= max(1, total / 50), "\(name): \(outside) of \(total) sampled values beyond 4 standard errors")
}
