// Tern's own declarations of the part of ONNX Runtime's C ABI that Tern calls.
//
// ONNX Runtime exposes its C API as one exported function, OrtGetApiBase(), which returns a table of
// function pointers (OrtApi). The table only grows at its end, so a prefix of it is a stable ABI: this
// header declares the slots in order up to the last one Tern uses (130); slots Tern does not call are
// opaque pointers. Slot numbers and signatures are facts of the ABI (see ../shared/ONNXRUNTIME.md); the
// library itself is opened with dlopen at run time, so nothing here links against it.
//
// Enumerations are passed as plain ints; their values are listed in TernONNX/ORTConstants.swift.
#ifndef TERN_ONNXRUNTIME_ABI_H
#define TERN_ONNXRUNTIME_ABI_H

#include <stddef.h>
#include <stdint.h>

#pragma clang assume_nonnull begin

typedef struct OrtEnv OrtEnv;
typedef struct OrtStatus OrtStatus;
typedef struct OrtMemoryInfo OrtMemoryInfo;
typedef struct OrtSession OrtSession;
typedef struct OrtValue OrtValue;
typedef struct OrtRunOptions OrtRunOptions;
typedef struct OrtTypeInfo OrtTypeInfo;
typedef struct OrtTensorTypeAndShapeInfo OrtTensorTypeAndShapeInfo;
typedef struct OrtSessionOptions OrtSessionOptions;
typedef struct OrtAllocator OrtAllocator;
typedef struct OrtMapTypeInfo OrtMapTypeInfo;
typedef struct OrtSequenceTypeInfo OrtSequenceTypeInfo;
typedef struct OrtModelMetadata OrtModelMetadata;

/// NULL on success; otherwise an error the caller owns and must release.
typedef OrtStatus *_Nullable OrtStatusPtr;
typedef int OrtErrorCodeValue;

/// The table of API functions, declared up to slot 130.
typedef struct TernOrtApi {
    /*   0 */ const void *_Nullable unused0;
    /*   1 */ OrtErrorCodeValue (*_Nonnull GetErrorCode)(const OrtStatus *status);
    /*   2 */ const char *_Nonnull (*_Nonnull GetErrorMessage)(const OrtStatus *status);
    /*   3 */ OrtStatusPtr (*_Nonnull CreateEnv)(int logLevel, const char *logId, OrtEnv *_Nullable *_Nonnull out);
    /*   4 */ const void *_Nullable unused4;
    /*   5 */ const void *_Nullable unused5;
    /*   6 */ const void *_Nullable unused6;
    /*   7 */ OrtStatusPtr (*_Nonnull CreateSession)(const OrtEnv *env, const char *modelPath, const OrtSessionOptions *options, OrtSession *_Nullable *_Nonnull out);
    /*   8 */ OrtStatusPtr (*_Nonnull CreateSessionFromArray)(const OrtEnv *env, const void *modelData, size_t modelDataLength, const OrtSessionOptions *options, OrtSession *_Nullable *_Nonnull out);
    /*   9 */ OrtStatusPtr (*_Nonnull Run)(OrtSession *session, const OrtRunOptions *_Nullable runOptions, const char *_Nullable const *_Nonnull inputNames, const OrtValue *_Nullable const *_Nonnull inputs, size_t inputCount, const char *_Nullable const *_Nonnull outputNames, size_t outputCount, OrtValue *_Nullable *_Nonnull outputs);
    /*  10 */ OrtStatusPtr (*_Nonnull CreateSessionOptions)(OrtSessionOptions *_Nullable *_Nonnull out);
    /*  11 */ const void *_Nullable unused11;
    /*  12 */ const void *_Nullable unused12;
    /*  13 */ OrtStatusPtr (*_Nonnull SetSessionExecutionMode)(OrtSessionOptions *options, int executionMode);
    /*  14 */ const void *_Nullable unused14;
    /*  15 */ const void *_Nullable unused15;
    /*  16 */ OrtStatusPtr (*_Nonnull EnableMemPattern)(OrtSessionOptions *options);
    /*  17 */ OrtStatusPtr (*_Nonnull DisableMemPattern)(OrtSessionOptions *options);
    /*  18 */ OrtStatusPtr (*_Nonnull EnableCpuMemArena)(OrtSessionOptions *options);
    /*  19 */ OrtStatusPtr (*_Nonnull DisableCpuMemArena)(OrtSessionOptions *options);
    /*  20 */ const void *_Nullable unused20;
    /*  21 */ const void *_Nullable unused21;
    /*  22 */ OrtStatusPtr (*_Nonnull SetSessionLogSeverityLevel)(OrtSessionOptions *options, int severity);
    /*  23 */ OrtStatusPtr (*_Nonnull SetSessionGraphOptimizationLevel)(OrtSessionOptions *options, int level);
    /*  24 */ OrtStatusPtr (*_Nonnull SetIntraOpNumThreads)(OrtSessionOptions *options, int threads);
    /*  25 */ OrtStatusPtr (*_Nonnull SetInterOpNumThreads)(OrtSessionOptions *options, int threads);
    /*  26 */ const void *_Nullable unused26;
    /*  27 */ const void *_Nullable unused27;
    /*  28 */ const void *_Nullable unused28;
    /*  29 */ const void *_Nullable unused29;
    /*  30 */ OrtStatusPtr (*_Nonnull SessionGetInputCount)(const OrtSession *session, size_t *out);
    /*  31 */ OrtStatusPtr (*_Nonnull SessionGetOutputCount)(const OrtSession *session, size_t *out);
    /*  32 */ const void *_Nullable unused32;
    /*  33 */ OrtStatusPtr (*_Nonnull SessionGetInputTypeInfo)(const OrtSession *session, size_t index, OrtTypeInfo *_Nullable *_Nonnull out);
    /*  34 */ OrtStatusPtr (*_Nonnull SessionGetOutputTypeInfo)(const OrtSession *session, size_t index, OrtTypeInfo *_Nullable *_Nonnull out);
    /*  35 */ const void *_Nullable unused35;
    /*  36 */ OrtStatusPtr (*_Nonnull SessionGetInputName)(const OrtSession *session, size_t index, OrtAllocator *allocator, char *_Nullable *_Nonnull out);
    /*  37 */ OrtStatusPtr (*_Nonnull SessionGetOutputName)(const OrtSession *session, size_t index, OrtAllocator *allocator, char *_Nullable *_Nonnull out);
    /*  38 */ const void *_Nullable unused38;
    /*  39 */ OrtStatusPtr (*_Nonnull CreateRunOptions)(OrtRunOptions *_Nullable *_Nonnull out);
    /*  40 */ const void *_Nullable unused40;
    /*  41 */ const void *_Nullable unused41;
    /*  42 */ const void *_Nullable unused42;
    /*  43 */ const void *_Nullable unused43;
    /*  44 */ const void *_Nullable unused44;
    /*  45 */ const void *_Nullable unused45;
    /*  46 */ OrtStatusPtr (*_Nonnull RunOptionsSetTerminate)(OrtRunOptions *options);
    /*  47 */ OrtStatusPtr (*_Nonnull RunOptionsUnsetTerminate)(OrtRunOptions *options);
    /*  48 */ OrtStatusPtr (*_Nonnull CreateTensorAsOrtValue)(OrtAllocator *allocator, const int64_t *_Nullable shape, size_t shapeLength, int elementType, OrtValue *_Nullable *_Nonnull out);
    /*  49 */ OrtStatusPtr (*_Nonnull CreateTensorWithDataAsOrtValue)(const OrtMemoryInfo *info, void *_Nullable data, size_t dataLength, const int64_t *_Nullable shape, size_t shapeLength, int elementType, OrtValue *_Nullable *_Nonnull out);
    /*  50 */ OrtStatusPtr (*_Nonnull IsTensor)(const OrtValue *value, int *out);
    /*  51 */ OrtStatusPtr (*_Nonnull GetTensorMutableData)(OrtValue *value, void *_Nullable *_Nonnull out);
    /*  52 */ OrtStatusPtr (*_Nonnull FillStringTensor)(OrtValue *value, const char *_Nonnull const *_Nullable strings, size_t count);
    /*  53 */ OrtStatusPtr (*_Nonnull GetStringTensorDataLength)(const OrtValue *value, size_t *out);
    /*  54 */ OrtStatusPtr (*_Nonnull GetStringTensorContent)(const OrtValue *value, void *_Nullable data, size_t dataLength, size_t *_Nullable offsets, size_t offsetCount);
    /*  55 */ OrtStatusPtr (*_Nonnull CastTypeInfoToTensorInfo)(const OrtTypeInfo *info, const OrtTensorTypeAndShapeInfo *_Nullable *_Nonnull out);
    /*  56 */ OrtStatusPtr (*_Nonnull GetOnnxTypeFromTypeInfo)(const OrtTypeInfo *info, int *out);
    /*  57 */ const void *_Nullable unused57;
    /*  58 */ const void *_Nullable unused58;
    /*  59 */ const void *_Nullable unused59;
    /*  60 */ OrtStatusPtr (*_Nonnull GetTensorElementType)(const OrtTensorTypeAndShapeInfo *info, int *out);
    /*  61 */ OrtStatusPtr (*_Nonnull GetDimensionsCount)(const OrtTensorTypeAndShapeInfo *info, size_t *out);
    /*  62 */ OrtStatusPtr (*_Nonnull GetDimensions)(const OrtTensorTypeAndShapeInfo *info, int64_t *_Nullable dims, size_t dimsLength);
    /*  63 */ OrtStatusPtr (*_Nonnull GetSymbolicDimensions)(const OrtTensorTypeAndShapeInfo *info, const char *_Nullable *_Nullable names, size_t namesLength);
    /*  64 */ OrtStatusPtr (*_Nonnull GetTensorShapeElementCount)(const OrtTensorTypeAndShapeInfo *info, size_t *out);
    /*  65 */ OrtStatusPtr (*_Nonnull GetTensorTypeAndShape)(const OrtValue *value, OrtTensorTypeAndShapeInfo *_Nullable *_Nonnull out);
    /*  66 */ OrtStatusPtr (*_Nonnull GetTypeInfo)(const OrtValue *value, OrtTypeInfo *_Nullable *_Nonnull out);
    /*  67 */ OrtStatusPtr (*_Nonnull GetValueType)(const OrtValue *value, int *out);
    /*  68 */ const void *_Nullable unused68;
    /*  69 */ OrtStatusPtr (*_Nonnull CreateCpuMemoryInfo)(int allocatorType, int memoryType, OrtMemoryInfo *_Nullable *_Nonnull out);
    /*  70 */ const void *_Nullable unused70;
    /*  71 */ const void *_Nullable unused71;
    /*  72 */ const void *_Nullable unused72;
    /*  73 */ const void *_Nullable unused73;
    /*  74 */ const void *_Nullable unused74;
    /*  75 */ const void *_Nullable unused75;
    /*  76 */ OrtStatusPtr (*_Nonnull AllocatorFree)(OrtAllocator *allocator, void *_Nullable pointer);
    /*  77 */ const void *_Nullable unused77;
    /*  78 */ OrtStatusPtr (*_Nonnull GetAllocatorWithDefaultOptions)(OrtAllocator *_Nullable *_Nonnull out);
    /*  79 */ const void *_Nullable unused79;
    /*  80 */ OrtStatusPtr (*_Nonnull GetValue)(const OrtValue *value, int index, OrtAllocator *allocator, OrtValue *_Nullable *_Nonnull out);
    /*  81 */ OrtStatusPtr (*_Nonnull GetValueCount)(const OrtValue *value, size_t *out);
    /*  82 */ const void *_Nullable unused82;
    /*  83 */ const void *_Nullable unused83;
    /*  84 */ const void *_Nullable unused84;
    /*  85 */ const void *_Nullable unused85;
    /*  86 */ const void *_Nullable unused86;
    /*  87 */ const void *_Nullable unused87;
    /*  88 */ const void *_Nullable unused88;
    /*  89 */ const void *_Nullable unused89;
    /*  90 */ const void *_Nullable unused90;
    /*  91 */ const void *_Nullable unused91;
    /*  92 */ void (*_Nonnull ReleaseEnv)(OrtEnv *_Nullable env);
    /*  93 */ void (*_Nonnull ReleaseStatus)(OrtStatus *_Nullable status);
    /*  94 */ void (*_Nonnull ReleaseMemoryInfo)(OrtMemoryInfo *_Nullable info);
    /*  95 */ void (*_Nonnull ReleaseSession)(OrtSession *_Nullable session);
    /*  96 */ void (*_Nonnull ReleaseValue)(OrtValue *_Nullable value);
    /*  97 */ void (*_Nonnull ReleaseRunOptions)(OrtRunOptions *_Nullable options);
    /*  98 */ void (*_Nonnull ReleaseTypeInfo)(OrtTypeInfo *_Nullable info);
    /*  99 */ void (*_Nonnull ReleaseTensorTypeAndShapeInfo)(OrtTensorTypeAndShapeInfo *_Nullable info);
    /* 100 */ void (*_Nonnull ReleaseSessionOptions)(OrtSessionOptions *_Nullable options);
    /* 101 */ const void *_Nullable unused101;
    /* 102 */ const void *_Nullable unused102;
    /* 103 */ OrtStatusPtr (*_Nonnull CastTypeInfoToMapTypeInfo)(const OrtTypeInfo *info, const OrtMapTypeInfo *_Nullable *_Nonnull out);
    /* 104 */ OrtStatusPtr (*_Nonnull CastTypeInfoToSequenceTypeInfo)(const OrtTypeInfo *info, const OrtSequenceTypeInfo *_Nullable *_Nonnull out);
    /* 105 */ OrtStatusPtr (*_Nonnull GetMapKeyType)(const OrtMapTypeInfo *info, int *out);
    /* 106 */ OrtStatusPtr (*_Nonnull GetMapValueType)(const OrtMapTypeInfo *info, OrtTypeInfo *_Nullable *_Nonnull out);
    /* 107 */ OrtStatusPtr (*_Nonnull GetSequenceElementType)(const OrtSequenceTypeInfo *info, OrtTypeInfo *_Nullable *_Nonnull out);
    /* 108 */ const void *_Nullable unused108;
    /* 109 */ const void *_Nullable unused109;
    /* 110 */ const void *_Nullable unused110;
    /* 111 */ OrtStatusPtr (*_Nonnull SessionGetModelMetadata)(const OrtSession *session, OrtModelMetadata *_Nullable *_Nonnull out);
    /* 112 */ OrtStatusPtr (*_Nonnull ModelMetadataGetProducerName)(const OrtModelMetadata *metadata, OrtAllocator *allocator, char *_Nullable *_Nonnull out);
    /* 113 */ OrtStatusPtr (*_Nonnull ModelMetadataGetGraphName)(const OrtModelMetadata *metadata, OrtAllocator *allocator, char *_Nullable *_Nonnull out);
    /* 114 */ OrtStatusPtr (*_Nonnull ModelMetadataGetDomain)(const OrtModelMetadata *metadata, OrtAllocator *allocator, char *_Nullable *_Nonnull out);
    /* 115 */ OrtStatusPtr (*_Nonnull ModelMetadataGetDescription)(const OrtModelMetadata *metadata, OrtAllocator *allocator, char *_Nullable *_Nonnull out);
    /* 116 */ OrtStatusPtr (*_Nonnull ModelMetadataLookupCustomMetadataMap)(const OrtModelMetadata *metadata, OrtAllocator *allocator, const char *key, char *_Nullable *_Nonnull out);
    /* 117 */ OrtStatusPtr (*_Nonnull ModelMetadataGetVersion)(const OrtModelMetadata *metadata, int64_t *out);
    /* 118 */ void (*_Nonnull ReleaseModelMetadata)(OrtModelMetadata *_Nullable metadata);
    /* 119 */ const void *_Nullable unused119;
    /* 120 */ const void *_Nullable unused120;
    /* 121 */ const void *_Nullable unused121;
    /* 122 */ const void *_Nullable unused122;
    /* 123 */ OrtStatusPtr (*_Nonnull ModelMetadataGetCustomMetadataMapKeys)(const OrtModelMetadata *metadata, OrtAllocator *allocator, char *_Nullable *_Nullable *_Nonnull keys, int64_t *count);
    /* 124 */ const void *_Nullable unused124;
    /* 125 */ OrtStatusPtr (*_Nonnull GetAvailableProviders)(char *_Nullable *_Nullable *_Nonnull out, int *count);
    /* 126 */ OrtStatusPtr (*_Nonnull ReleaseAvailableProviders)(char *_Nullable *_Nullable providers, int count);
    /* 127 */ OrtStatusPtr (*_Nonnull GetStringTensorElementLength)(const OrtValue *value, size_t index, size_t *out);
    /* 128 */ OrtStatusPtr (*_Nonnull GetStringTensorElement)(const OrtValue *value, size_t length, size_t index, void *out);
    /* 129 */ OrtStatusPtr (*_Nonnull FillStringTensorElement)(OrtValue *value, const char *string, size_t index);
    /* 130 */ OrtStatusPtr (*_Nonnull AddSessionConfigEntry)(OrtSessionOptions *options, const char *key, const char *value);
} TernOrtApi;

_Static_assert(sizeof(TernOrtApi) == 131 * sizeof(void *), "OrtApi prefix must be 131 slots");

/// What OrtGetApiBase() returns.
typedef struct TernOrtApiBase {
    const TernOrtApi *_Nullable (*_Nonnull GetApi)(uint32_t version);
    const char *_Nonnull (*_Nonnull GetVersionString)(void);
} TernOrtApiBase;

typedef const TernOrtApiBase *_Nullable (*TernOrtGetApiBaseFunction)(void);

#pragma clang assume_nonnull end

#endif
