import ArgumentParser
import Foundation

/// The container contracts of the cloud platforms `tern serve --platform` speaks.
enum Platform: String, ExpressibleByArgument, CaseIterable {
    case standalone, sagemaker, vertex, azureml

    /// Defaults a platform sets, read from its environment variables at start.
    struct Preset {
        var models: String?
        var httpPort = 8000
        var grpc = true
        var healthRoutes: [String] = []
        var predictRoutes: [String] = []
    }

    /// The environment variable that names the model folder on this platform.
    var modelsVariable: String? {
        switch self {
        case .vertex: "AIP_STORAGE_URI"
        case .azureml: "AZUREML_MODEL_DIR"
        case .standalone, .sagemaker: nil
        }
    }

    func preset(_ environment: [String: String]) throws -> Preset {
        switch self {
        case .standalone:
            return Preset()
        case .sagemaker:
            // SageMaker unpacks model.tar.gz into /opt/ml/model and sends /ping and /invocations to port 8080.
            return Preset(
                models: "/opt/ml/model", httpPort: Int(environment["SAGEMAKER_BIND_TO_PORT"] ?? "") ?? 8080, grpc: false)
        case .vertex:
            // Vertex AI names the port, routes and model location in AIP_* variables.
            var models = environment["AIP_STORAGE_URI"]
            if let uri = models, uri.hasPrefix("gs://") {
                // Custom containers see Cloud Storage through the FUSE mount at /gcs/<bucket>/<path>.
                let mounted = "/gcs/" + uri.dropFirst("gs://".count)
                guard FileManager.default.fileExists(atPath: mounted) else {
                    throw ValidationError(
                        "AIP_STORAGE_URI is \(uri), which is not mounted at \(mounted); copy the model "
                            + "into the image, or pass --models with a local path")
                }
                models = mounted
            }
            return Preset(
                models: models, httpPort: Int(environment["AIP_HTTP_PORT"] ?? "") ?? 8080, grpc: false,
                healthRoutes: [environment["AIP_HEALTH_ROUTE"] ?? "/health"],
                predictRoutes: [environment["AIP_PREDICT_ROUTE"] ?? "/predict"])
        case .azureml:
            // Azure ML's inference server contract: port 5001, liveness on /, scoring on /score.
            return Preset(
                models: environment["AZUREML_MODEL_DIR"], httpPort: 5001, grpc: false, healthRoutes: ["/"],
                predictRoutes: ["/score"])
        }
    }
}
