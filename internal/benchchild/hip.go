package benchchild

// The HIP runtime entry points the ROCm check resolves (hip_cgo.go), by index. HIP has no _v2 names and no
// legacy ABI; hipHostAlloc is the newer name of hipHostMalloc in some ROCm releases, with the same signature.
const (
	hipFnInit = iota
	hipFnDriverGetVersion
	hipFnGetErrorName
	hipFnGetDeviceCount
	hipFnDeviceGet
	hipFnDeviceGetByPCIBusID
	hipFnDeviceGetPCIBusID
	hipFnDeviceGetName
	hipFnSetDevice
	hipFnMemGetInfo
	hipFnMalloc
	hipFnFree
	hipFnHostMalloc
	hipFnHostFree
	hipFnHostRegister
	hipFnHostUnregister
	hipFnStreamCreate
	hipFnStreamDestroy
	hipFnStreamSynchronize
	hipFnEventCreate
	hipFnEventDestroy
	hipFnEventRecord
	hipFnEventSynchronize
	hipFnEventElapsedTime
	hipFnMemcpyHtoDAsync
	hipFnMemcpyDtoHAsync
	numHIPSymbols
)

var hipSymbols = [numHIPSymbols]symbol{
	hipFnInit:                {name: "hipInit"},
	hipFnDriverGetVersion:    {name: "hipDriverGetVersion"},
	hipFnGetErrorName:        {name: "hipGetErrorName", optional: true},
	hipFnGetDeviceCount:      {name: "hipGetDeviceCount"},
	hipFnDeviceGet:           {name: "hipDeviceGet"},
	hipFnDeviceGetByPCIBusID: {name: "hipDeviceGetByPCIBusId"},
	hipFnDeviceGetPCIBusID:   {name: "hipDeviceGetPCIBusId"},
	hipFnDeviceGetName:       {name: "hipDeviceGetName", optional: true},
	hipFnSetDevice:           {name: "hipSetDevice"},
	hipFnMemGetInfo:          {name: "hipMemGetInfo"},
	hipFnMalloc:              {name: "hipMalloc"},
	hipFnFree:                {name: "hipFree"},
	hipFnHostMalloc:          {name: "hipHostMalloc", fallback: "hipHostAlloc"},
	hipFnHostFree:            {name: "hipHostFree"},
	hipFnHostRegister:        {name: "hipHostRegister", optional: true},
	hipFnHostUnregister:      {name: "hipHostUnregister", optional: true},
	hipFnStreamCreate:        {name: "hipStreamCreateWithFlags"},
	hipFnStreamDestroy:       {name: "hipStreamDestroy"},
	hipFnStreamSynchronize:   {name: "hipStreamSynchronize"},
	hipFnEventCreate:         {name: "hipEventCreateWithFlags"},
	hipFnEventDestroy:        {name: "hipEventDestroy"},
	hipFnEventRecord:         {name: "hipEventRecord"},
	hipFnEventSynchronize:    {name: "hipEventSynchronize"},
	hipFnEventElapsedTime:    {name: "hipEventElapsedTime"},
	hipFnMemcpyHtoDAsync:     {name: "hipMemcpyHtoDAsync"},
	hipFnMemcpyDtoHAsync:     {name: "hipMemcpyDtoHAsync"},
}

// hipLibraryFallbacks are tried, in order, when the default HIP library name does not load: the versioned
// sonames of ROCm 7, 6 and 5 (a runtime-only install may lack the unversioned link) and ROCm's own directory,
// which is not always on the loader's path.
var hipLibraryFallbacks = []string{"libamdhip64.so.7", "libamdhip64.so.6", "libamdhip64.so.5", "/opt/rocm/lib/libamdhip64.so"}
