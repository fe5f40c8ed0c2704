import Foundation
import TernBundle
import TernCore
import TernONNX
import TernTestSupport
import Testing

@testable import TernExplain

/// The German credit pipelines (Tests/Fixtures/pipelines, from tools/make-pipeline-fixtures.py): one `[N,1]`
/// input per column, strings and integers, a ColumnTransformer before the trees. Explained through the
/// graph's own preprocessing, one attribution per source column, they equal shap's grouped TreeExplainer
/// values; the mixed network, explained by KernelSHAP over its columns, equals the exact Shapley values.
@Suite("Pipelines, explained per source column")
struct PipelineTests {
    static let folder = Fixtures.repositoryRoot + "/Tests/Fixtures/pipelines"

    struct Case {
        var columns: [String]
        var rows: [[String]]
        var values: [[Double]]
        var base: Double
    }

    static func load(_ name: String, method: String) throws -> Case {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(folder)/\(name)/shap.json"))
        let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let columns = try #require(document["columns"] as? [String])
        let rows = try #require(document["rows"] as? [[String: Any]]).map { row in columns.map { "\(row[$0]!)" } }
        let methods = try #require(document["methods"] as? [String: [String: Any]])
        let chosen = try #require(methods[method])
        return Case(
            columns: columns, rows: rows, values: try #require(chosen["values"] as? [[Double]]),
            base: try #require((chosen["base"] as? [Double])?.first))
    }

    static func explainer(_ name: String, background: String) async throws -> (ColumnExplainer, ONNXModel) {
        let path = "\(folder)/\(name)/model.onnx"
        let model = try ONNXModel(path: path, runtime: Fixtures.runtime, pool: Fixtures.pool)
        let columns = try SourceColumns(inputs: model.signature.inputs, featureNames: nil)
        let table = try CSVTable(text: try String(contentsOfFile: "\(folder)/\(background)", encoding: .utf8))
        let cells = try columns.rows(columns: table.columns, values: table.rows, what: background)
        let explainer = try await ColumnExplainer.prepare(
            model: model, onnx: model, data: try Data(contentsOf: URL(fileURLWithPath: path)), columns: columns, background: cells)
        return (explainer, model)
    }

    @Test("trees behind a ColumnTransformer: shap's grouped values, base + sum = margin", arguments: ["german_gb", "german_xgb", "german_lgbm"])
    func trees(name: String) async throws {
        let expected = try Self.load(name, method: "interventional")
        let (explainer, _) = try await Self.explainer(name, background: "german-background.csv")
        #expect(explainer.preprocessing != nil && explainer.exact != nil, "\(explainer.unsupported ?? "")")
        #expect(explainer.columns.names == expected.columns)
        #expect(explainer.columns.columns.filter(\.isText).count == 13)
        let rows = try explainer.columns.rows(columns: expected.columns, values: expected.rows, what: "rows")
        let (attributions, background) = try await explainer.explain(
            rows, method: nil, kernel: KernelSHAP(samples: 2048), backgroundRows: 50, what: name, noBackground: "")
        #expect(background == 100 && attributions.method == .interventional)
        #expect(abs(attributions.base[0] - expected.base) < 1e-6)
        for r in rows.indices {
            for c in expected.columns.indices {
                let value = attributions.value(row: r, feature: c, output: 0)
                #expect(abs(value - expected.values[r][c]) < 1e-6, "\(name) row \(r) \(expected.columns[c])")
            }
            let sum = (0..<attributions.featureCount).reduce(attributions.base[0]) { $0 + attributions.value(row: r, feature: $1, output: 0) }
            #expect(abs(sum - attributions.margins[r][0]) < 1e-9)
        }
    }

    @Test("a network over string and integer columns: KernelSHAP over the columns equals the exact Shapley values")
    func network() async throws {
        let expected = try Self.load("mixed_mlp", method: "exact")
        let (explainer, _) = try await Self.explainer("mixed_mlp", background: "mixed-background.csv")
        #expect(explainer.exact == nil)
        let rows = try explainer.columns.rows(columns: expected.columns, values: expected.rows, what: "rows")
        let (attributions, _) = try await explainer.explain(
            rows, method: nil, kernel: KernelSHAP(samples: 2048), backgroundRows: 50, what: "mixed_mlp", noBackground: "")
        #expect(attributions.method == .kernel)
        let output = attributions.outputs - 1  // P(bad)
        #expect(abs(attributions.base[output] - expected.base) < 1e-9)
        for r in rows.indices {
            for c in expected.columns.indices {
                #expect(abs(attributions.value(row: r, feature: c, output: output) - expected.values[r][c]) < 1e-9)
            }
        }
    }

    @Test("cells go to the model's tensors and back: strings stay strings, numbers numbers")
    func roundTrip() async throws {
        let (explainer, _) = try await Self.explainer("german_gb", background: "german-background.csv")
        let rows = Array(explainer.background.prefix(5))
        let tensors = try explainer.columns.tensors(rows)
        #expect(tensors.count == 20 && tensors.allSatisfy { $0.shape == [5, 1] })
        #expect(try explainer.columns.rows(tensors: tensors) == rows)
        #expect(throws: TernError.self) { try explainer.columns.rows(columns: ["purpose"], values: [["car"]], what: "rows") }
    }
}
