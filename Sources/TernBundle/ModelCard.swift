import Foundation

/// The Markdown model card written into every bundle, generated from what the bundle knows.
public enum ModelCard {
    public static func markdown(manifest: BundleManifest, profile: ReferenceProfile?, metrics: ValidationMetrics?) -> String {
        var lines: [String] = []
        let version = manifest.version.map { " v\($0)" } ?? ""
        lines.append("# \(manifest.name)\(version)")
        lines.append("")
        if let description = manifest.description { lines += [description, ""] }
        lines.append("| | |")
        lines.append("|---|---|")
        lines.append("| Owner | \(manifest.owner ?? "not given") |")
        lines.append("| Task | \(manifest.task ?? "not given") |")
        lines.append("| Created | \(manifest.createdAt) by \(manifest.producer) |")
        if !manifest.tags.isEmpty { lines.append("| Tags | \(manifest.tags.joined(separator: ", ")) |") }
        if let classes = manifest.classLabels { lines.append("| Classes | \(classes.joined(separator: ", ")) |") }
        if let model = manifest.files[BundleFile.model] {
            lines.append("| Model | \(BundleFile.model), \(model.bytes) bytes, sha256 `\(model.sha256)` |")
        }
        lines.append("")
        lines.append("## Signature")
        lines.append("")
        lines.append("| | name | datatype | shape |")
        lines.append("|---|---|---|---|")
        for spec in manifest.signature.inputs { lines.append("| input | \(spec.name) | \(spec.datatype) | \(spec.shape) |") }
        for spec in manifest.signature.outputs { lines.append("| output | \(spec.name) | \(spec.datatype) | \(spec.shape) |") }
        if let names = manifest.featureNames {
            lines += ["", "Features, in order: " + names.map { "`\($0)`" }.joined(separator: ", ")]
        }
        lines.append("")
        lines.append("## Validation")
        lines.append("")
        if let metrics {
            lines.append("On \(metrics.rows) holdout rows (label column `\(metrics.labelColumn)`):")
            lines.append("")
            lines.append("| metric | value |")
            lines.append("|---|---|")
            let values: [(String, Double?)] = [
                ("accuracy", metrics.accuracy), ("precision", metrics.precision), ("recall", metrics.recall),
                ("F1", metrics.f1), ("ROC AUC", metrics.rocAuc), ("log loss", metrics.logLoss),
                ("MAE", metrics.mae), ("RMSE", metrics.rmse), ("R²", metrics.r2),
            ]
            for case (let name, let value?) in values { lines.append("| \(name) | \(format(value)) |") }
            if let averaging = metrics.averaging { lines += ["", "Precision, recall and F1: \(averaging)."] }
            if let matrix = metrics.confusionMatrix, let classes = metrics.classes {
                lines += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
                lines.append("| | " + classes.joined(separator: " | ") + " |")
                lines.append("|---" + String(repeating: "|---", count: classes.count) + "|")
                for (name, row) in zip(classes, matrix) {
                    lines.append("| **\(name)** | " + row.map(String.init).joined(separator: " | ") + " |")
                }
            }
        } else {
            lines.append("No holdout set was given to `tern pack`.")
        }
        lines.append("")
        lines.append("## Training data")
        lines.append("")
        if let profile {
            lines.append("Reference profile of \(profile.rows) rows (kept in \(BundleFile.profile) for drift detection):")
            lines.append("")
            lines.append("| feature | kind | missing | mean | std | min | median | max |")
            lines.append("|---|---|---|---|---|---|---|---|")
            for feature in profile.features + profile.predictions {
                if let numeric = feature.numeric {
                    lines.append(
                        "| \(feature.name) | numeric | \(feature.missing) | \(format(numeric.mean)) | "
                            + "\(format(numeric.std)) | \(format(numeric.min)) | \(format(numeric.quantiles["0.5"])) | \(format(numeric.max)) |")
                } else if let categorical = feature.categorical {
                    let top = categorical.frequencies.max { $0.value < $1.value }.map { "most: \($0.key)" } ?? ""
                    lines.append("| \(feature.name) | categorical (\(categorical.distinct) values) | \(feature.missing) | \(top) | | | | |")
                }
            }
            if !profile.predictions.isEmpty {
                lines += ["", "The last \(profile.predictions.count) rows profile the model's own outputs on that data."]
            }
        } else {
            lines.append("No reference data was given to `tern pack`: drift cannot be measured for this version.")
        }
        lines.append("")
        return lines.joined(separator: "\n")
    }

    static func format(_ value: Double?) -> String {
        guard let value else { return "" }
        return String(format: "%.6g", value)
    }
}
