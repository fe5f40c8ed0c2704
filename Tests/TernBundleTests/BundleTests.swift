import Foundation
import TernCore
import Testing
import ZIPFoundation

@testable import TernBundle

private let signature = ModelSignature(
    inputs: [TensorSpec(name: "features", datatype: .fp32, shape: [-1, 3])],
    outputs: [TensorSpec(name: "label", datatype: .int64, shape: [-1])])

private func sampleBundle(model: Data = Data("not really onnx".utf8)) -> ModelBundle {
    ModelBundle(
        manifest: BundleManifest(name: "demo", version: 3, producer: "tern test", signature: signature),
        files: [BundleFile.model: model, BundleFile.card: Data("# demo\n".utf8)])
}

/// Rewrites an archive with one entry's bytes replaced (the manifest left as it was).
private func tampered(_ archive: Data, file: String, with data: Data) throws -> Data {
    let source = try Archive(data: archive, accessMode: .read)
    let target = try Archive(data: Data(), accessMode: .create)
    for entry in source {
        var bytes = Data()
        _ = try source.extract(entry) { bytes.append($0) }
        if entry.path == file { bytes = data }
        try target.addEntry(
            with: entry.path, type: .file, uncompressedSize: Int64(bytes.count),
            provider: { position, size in bytes.subdata(in: Int(position)..<Int(position) + size) })
    }
    return target.data!
}

@Suite struct BundleArchiveTests {
    @Test func roundTripKeepsManifestAndFiles() throws {
        let bundle = sampleBundle()
        let read = try ModelBundle(archive: try bundle.archive())
        #expect(read.manifest == bundle.manifest)
        #expect(read.files == bundle.files)
        #expect(read.manifest.files[BundleFile.model]?.sha256 == Digest.sha256(Data("not really onnx".utf8)))
        #expect(read.manifest.files[BundleFile.model]?.bytes == 15)
    }

    @Test func truncatedOrForeignDataIsRefused() throws {
        let archive = try sampleBundle().archive()
        for bad in [archive.prefix(archive.count / 2), Data("hello".utf8), Data()] {
            #expect { try ModelBundle(archive: Data(bad)) } throws: {
                ($0 as? TernError)?.code == .invalidArgument && "\($0)".contains("not a Tern bundle")
            }
        }
    }

    @Test func alteredFileFailsItsChecksum() throws {
        let archive = try tampered(try sampleBundle().archive(), file: BundleFile.model, with: Data("swapped model!!".utf8))
        #expect { try ModelBundle(archive: archive) } throws: { "\($0)".contains("checksum mismatch for model.onnx") }
    }

    @Test func manifestMustBeValid() throws {
        let archive = try tampered(try sampleBundle().archive(), file: BundleFile.manifest, with: Data(#"{"name": 3}"#.utf8))
        #expect { try ModelBundle(archive: archive) } throws: { "\($0)".contains("tern.json is not a valid manifest") }
        var bad = sampleBundle()
        bad.manifest.name = "../etc"
        #expect { try ModelBundle(archive: try bad.archive()) } throws: { "\($0)".contains("model name '../etc'") }
    }

    @Test func duplicateEntriesAreRefused() throws {
        let target = try Archive(data: try sampleBundle().archive(), accessMode: .update)
        let other = Data(#"{"name": "other"}"#.utf8)
        try target.addEntry(
            with: BundleFile.manifest, type: .file, uncompressedSize: Int64(other.count),
            provider: { position, size in other.subdata(in: Int(position)..<Int(position) + size) })
        #expect { try ModelBundle(archive: target.data!) } throws: { "\($0)".contains("bundle holds tern.json twice") }
    }

    @Test func oversizedAndHighlyCompressedEntriesAreRefusedBeforeInflating() throws {
        let card = Data(repeating: UInt8(ascii: "a"), count: 4 << 20)  // 4 MiB of one byte: deflates ~1000 times
        let archive = try ModelBundle(
            manifest: sampleBundle().manifest, files: [BundleFile.model: Data("m".utf8), BundleFile.card: card]
        ).archive()
        #expect { try ModelBundle(archive: archive) } throws: { "\($0)".contains("'MODEL_CARD.md' inflates") }
        let small = BundleLimits(smallFileBytes: 1 << 20, maxCompressionRatio: 10_000)
        #expect { try ModelBundle(archive: archive, limits: small) } throws: {
            "\($0)".contains("'MODEL_CARD.md' is 4194304 bytes; the limit for it is 1048576")
        }
        #expect(try ModelBundle(archive: archive, limits: BundleLimits(maxCompressionRatio: 10_000)).files[BundleFile.card] == card)
    }

    @Test func junkWithoutAnEndRecordIsRefusedAtOnce() throws {
        let junk = Data(count: 8 << 20)
        #expect { try ModelBundle(archive: junk) } throws: { "\($0)".contains("not a complete zip archive") }
        var archive = try sampleBundle().archive()
        #expect(ModelBundle.hasEndRecord(archive.suffix(ModelBundle.endRecordWindow)))
        archive.append(Data(count: ModelBundle.endRecordWindow))  // the record pushed out of the last 64 KiB
        #expect(!ModelBundle.hasEndRecord(archive.suffix(ModelBundle.endRecordWindow)))
    }

    @Test func versionsAreBounded() throws {
        var bundle = sampleBundle()
        bundle.manifest.version = Int.max
        #expect { try ModelBundle(archive: try bundle.archive()) } throws: { "\($0)".contains("between 1 and 999999999") }
        #expect(try ModelVersionNumber.parse("999999999") == 999_999_999)
        #expect(throws: TernError.self) { try ModelVersionNumber.parse("1000000000") }
        #expect(throws: TernError.self) { try ModelVersionNumber.parse("9223372036854775808") }
        #expect(Echo.clip(String(repeating: "é", count: 1000)).utf8.count < 160)
        #expect(Echo.clip("short") == "short")
    }

    @Test func unexpectedFileIsRefused() throws {
        let target = try Archive(data: try sampleBundle().archive(), accessMode: .update)
        let payload = Data("x".utf8)
        try target.addEntry(with: "../evil.sh", type: .file, uncompressedSize: Int64(1), provider: { (_: Int64, _: Int) in payload })
        #expect { try ModelBundle(archive: target.data!) } throws: { "\($0)".contains("unexpected file '../evil.sh'") }
    }

    @Test func signatureContradictionIsNamed() throws {
        let manifest = sampleBundle().manifest
        let other = ModelSignature(inputs: [TensorSpec(name: "features", datatype: .fp32, shape: [-1, 4])], outputs: signature.outputs)
        #expect { try manifest.checkSignature(matches: other) } throws: {
            "\($0)".contains("declares inputs [features FP32 [-1, 3]] but the model has [features FP32 [-1, 4]]")
        }
        try manifest.checkSignature(matches: signature)
    }
}

@Suite struct CSVAndProfileTests {
    @Test func csvHandlesQuotesAndCRLF() throws {
        let table = try CSVTable(text: "a,b,c\r\n1,\"x, \"\"y\"\"\",3\r\n4,,6\n")
        #expect(table.columns == ["a", "b", "c"])
        #expect(table.rows == [["1", "x, \"y\"", "3"], ["4", "", "6"]])
        #expect { try CSVTable(text: "a,b\n1\n") } throws: { "\($0)".contains("row 1 has 1 values; the header has 2 columns") }
        #expect { try CSVTable(text: "a,a\n1,2\n") } throws: { "\($0)".contains("column 'a' appears twice") }
    }

    @Test func numericSummaryMatchesNumpy() {
        // numpy: mean 5.5, std(ddof=1) 3.0276503540974917, quantile(0.05) 1.45, quantile(0.25) 3.25
        let summary = NumericSummary((1...10).map(Double.init))
        #expect(summary.mean == 5.5)
        #expect(abs(summary.std! - 3.0276503540974917) < 1e-12)
        #expect(abs(summary.quantiles["0.05"]! - 1.45) < 1e-12)
        #expect(summary.quantiles["0.25"] == 3.25)
        // numpy.histogram(range(1, 11), 10) puts one value in each bin, 10 in the last (closed) bin.
        #expect(summary.histogram!.counts == [1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
        #expect(summary.histogram!.edges.first == 1 && summary.histogram!.edges.last == 10)
        // A constant column: numpy widens the range by 0.5 each side.
        #expect(NumericSummary([2, 2, 2]).histogram!.counts == [0, 0, 0, 0, 0, 3, 0, 0, 0, 0])
    }

    @Test func profileSplitsNumericFromCategorical() {
        let table = CSVTable(columns: ["x", "color"], rows: [["1", "red"], ["", "blue"], ["3", "red"], ["NA", ""]])
        let profile = ReferenceProfile(table: table, predictions: [])
        #expect(profile.features[0].kind == "numeric" && profile.features[0].count == 2 && profile.features[0].missing == 2)
        #expect(profile.features[1].kind == "categorical" && profile.features[1].categorical?.frequencies == ["red": 2, "blue": 1])
        #expect(profile.sample.rows.count == 4)
        let many = CSVTable(columns: ["i"], rows: (0..<5000).map { [String($0)] })
        let sampled = ReferenceProfile(table: many, predictions: [], sampleLimit: 1000)
        #expect(sampled.sample.rows.count == 1000)
        #expect(sampled.sample == ReferenceProfile(table: many, predictions: [], sampleLimit: 1000).sample)
        #expect(ReferenceProfile(table: many, predictions: []).sample.rows.count == 5000)  // under the default of 10,000
    }

    @Test func classificationMetricsMatchSklearn() throws {
        // sklearn on these labels: accuracy 0.6, precision 0.6667, recall 0.6667, f1 0.6667, roc_auc 0.8333
        let truth = ["0", "1", "1", "0", "1"]
        let predicted = ["0", "1", "0", "1", "1"]
        let probabilities = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]]
        let metrics = try ValidationMetrics.classification(
            truth: truth, predicted: predicted, probabilities: probabilities, classes: ["0", "1"], labelColumn: "y")
        #expect(metrics.accuracy == 0.6)
        #expect(abs(metrics.precision! - 2.0 / 3) < 1e-12 && abs(metrics.recall! - 2.0 / 3) < 1e-12)
        #expect(abs(metrics.rocAuc! - 5.0 / 6) < 1e-12)
        #expect(metrics.confusionMatrix == [[1, 1], [1, 2]])
        // log_loss = -mean(log([0.9, 0.8, 0.4, 0.3, 0.9]))
        let expected = -[0.9, 0.8, 0.4, 0.3, 0.9].map(log).reduce(0, +) / 5
        #expect(abs(metrics.logLoss! - expected) < 1e-12)
        #expect {
            try ValidationMetrics.classification(truth: ["2"], predicted: ["0"], probabilities: nil, classes: ["0", "1"], labelColumn: "y")
        } throws: {
            "\($0)".contains("label '2' is not one of the model's classes")
        }
    }

    @Test func regressionMetrics() {
        let metrics = ValidationMetrics.regression(truth: [1, 2, 3, 4], predicted: [1.5, 2, 2.5, 5], labelColumn: "y")
        #expect(metrics.mae == 0.5)
        #expect(abs(metrics.rmse! - (1.5 / 4).squareRoot()) < 1e-12)
        #expect(abs(metrics.r2! - (1 - 1.5 / 5)) < 1e-12)
    }
}

/// Found by tools/fuzz.sh FuzzBundle: a zip whose entry points past the end of the data trapped inside
/// ZIPFoundation's in-memory archive (a crash of `tern inspect` and `tern push`, and of a server reading such
/// bytes back). It must be refused with a 400-class error instead.
@Test func anEntryPointingPastTheEndIsRefusedNotACrash() throws {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz/bundle-entry-past-the-end.zip")
    let data = try Data(contentsOf: path)
    #expect(throws: TernError.self) { try ModelBundle(archive: data) }
    #expect(throws: TernError.self) { try ModelBundle(archiveFile: path.path) }
}

/// Found by FuzzBundle: a deflated entry whose stream does not end within the archive made ZIPFoundation's
/// inflate loop forever (under AddressSanitizer always; otherwise depending on heap bytes). Tern checks each
/// deflated stream with zlib first, so this is refused, whatever the heap holds.
@Test func aDeflateStreamThatDoesNotEndIsRefusedBeforeZIPFoundationInflatesIt() throws {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz/bundle-inflate-hang.zip")
    do {
        _ = try ModelBundle(archiveFile: path.path, limits: BundleLimits(modelBytes: 1 << 20, profileBytes: 1 << 20, smallFileBytes: 1 << 20))
        Issue.record("the bundle was accepted")
    } catch {
        #expect(error.message.contains("tern.json"), "\(error.message)")
        #expect(error.message.contains("stream") || error.message.contains("deflate"), "\(error.message)")
    }
}

/// Found by FuzzBundle next: an entry whose method number is neither stored (0) nor deflate (8), which
/// ZIPFoundation inflated anyway (and looped on).
@Test func anUnknownCompressionMethodIsRefused() throws {
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/fuzz/bundle-unknown-method-hang.zip")
    do {
        _ = try ModelBundle(archiveFile: path.path)
        Issue.record("the bundle was accepted")
    } catch {
        #expect(error.message.contains("compression method"), "\(error.message)")
    }
}

/// The check reads ZIP64 archives' directories and every bundle `tern pack` writes.
@Test func everyWellFormedBundlePassesTheDeflateCheck() throws {
    let archive = try sampleBundle(model: Data(repeating: 7, count: 300_000)).archive()
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("deflate-\(UUID().uuidString).tern").path
    try archive.write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let fd = open(path, O_RDONLY)
    defer { close(fd) }
    let entries = try DeflateCheck.entries(fd, size: UInt64(archive.count))
    #expect(Set(entries.map(\.name)) == [BundleFile.manifest, BundleFile.model, BundleFile.card])
    _ = try ModelBundle(archiveFile: path)
}
