package benchchild

// symbol is one runtime entry point: its preferred name and the unversioned name to fall back to.
// The fallback is empty where the unversioned symbol is the legacy ABI of CUDA before 3.2 (32-bit device
// pointers and sizes): calling it through our 64-bit prototype would be wrong, so such a driver is refused.
type symbol struct {
	name     string
	fallback string
	optional bool
}

// Indices into the symbol table; the order matches the C enum in cuda_cgo.go.
const (
	fnInit = iota
	fnDriverGetVersion
	fnGetErrorName
	fnDeviceGetCount
	fnDeviceGet
	fnDeviceGetByPCIBusID
	fnDeviceGetPCIBusID
	fnDeviceGetName
	fnCtxCreate
	fnCtxDestroy
	fnMemGetInfo
	fnMemAlloc
	fnMemFree
	fnMemHostAlloc
	fnMemFreeHost
	fnMemHostRegister
	fnMemHostUnregister
	fnStreamCreate
	fnStreamDestroy
	fnStreamSynchronize
	fnEventCreate
	fnEventDestroy
	fnEventRecord
	fnEventSynchronize
	fnEventElapsedTime
	fnMemcpyHtoDAsync
	fnMemcpyDtoHAsync
	numCUDASymbols
)

// cudaSymbols lists what is resolved, _v2 names first. Functions without a _v2 have only their plain name.
var cudaSymbols = [numCUDASymbols]symbol{
	fnInit:                {name: "cuInit"},
	fnDriverGetVersion:    {name: "cuDriverGetVersion"},
	fnGetErrorName:        {name: "cuGetErrorName", optional: true},
	fnDeviceGetCount:      {name: "cuDeviceGetCount"},
	fnDeviceGet:           {name: "cuDeviceGet"},
	fnDeviceGetByPCIBusID: {name: "cuDeviceGetByPCIBusId"},
	fnDeviceGetPCIBusID:   {name: "cuDeviceGetPCIBusId"},
	fnDeviceGetName:       {name: "cuDeviceGetName", optional: true},
	fnCtxCreate:           {name: "cuCtxCreate_v2"},
	fnCtxDestroy:          {name: "cuCtxDestroy_v2", fallback: "cuCtxDestroy"},
	fnMemGetInfo:          {name: "cuMemGetInfo_v2"},
	fnMemAlloc:            {name: "cuMemAlloc_v2"},
	fnMemFree:             {name: "cuMemFree_v2"},
	fnMemHostAlloc:        {name: "cuMemHostAlloc"},
	fnMemFreeHost:         {name: "cuMemFreeHost"},
	fnMemHostRegister:     {name: "cuMemHostRegister_v2", fallback: "cuMemHostRegister", optional: true},
	fnMemHostUnregister:   {name: "cuMemHostUnregister", optional: true},
	fnStreamCreate:        {name: "cuStreamCreate"},
	fnStreamDestroy:       {name: "cuStreamDestroy_v2", fallback: "cuStreamDestroy"},
	fnStreamSynchronize:   {name: "cuStreamSynchronize"},
	fnEventCreate:         {name: "cuEventCreate"},
	fnEventDestroy:        {name: "cuEventDestroy_v2", fallback: "cuEventDestroy"},
	fnEventRecord:         {name: "cuEventRecord"},
	fnEventSynchronize:    {name: "cuEventSynchronize"},
	fnEventElapsedTime:    {name: "cuEventElapsedTime"},
	fnMemcpyHtoDAsync:     {name: "cuMemcpyHtoDAsync_v2"},
	fnMemcpyDtoHAsync:     {name: "cuMemcpyDtoHAsync_v2"},
}

// legacyName is the unversioned name of a _v2 symbol, for error messages.
func legacyName(name string) string {
	if len(name) > 3 && name[len(name)-3:] == "_v2" {
		return name[:len(name)-3]
	}
	return name
}
