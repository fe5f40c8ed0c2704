// CONNXRuntime is a header-only declaration of the ONNX Runtime C ABI; SwiftPM needs one source file.
#include "onnxruntime_abi.h"
