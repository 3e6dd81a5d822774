package detector

// Device-id facts beyond the vendor and class code, each from the vendor's driver or the PCI id database.

// intelDiscreteGPUs are Intel's client discrete GPUs (Arc), from the kernel's PCI id tables
// (include/drm/intel/pciids.h: INTEL_DG2_G10/G11/G12_IDS for Alchemist, INTEL_BMG_IDS for Battlemage), the same
// lists Intel's compute-runtime carries (device_ids_configs_dg2.h, device_ids_configs_bmg.h). The 569x ids are
// the mobile Arc A-series, still discrete. Integrated graphics (Meteor Lake's and Lunar Lake's "Arc Graphics"
// 7d55, 64a0 ...) and DG1 (Iris Xe MAX, 4905-4909) are not here: no inference runtime targets them. The data
// centre parts (Flex, Max) are in intelDataCenterGPUs.
var intelDiscreteGPUs = map[uint16]bool{
	// DG2-G10: Arc A770/A750/A580, A770M/A730M.
	0x5690: true, 0x5691: true, 0x5692: true, 0x56a0: true, 0x56a1: true, 0x56a2: true, 0x56be: true, 0x56bf: true,
	// DG2-G11: Arc A380/A310, A370M/A350M, Arc Pro A40/A50.
	0x5693: true, 0x5694: true, 0x5695: true, 0x56a5: true, 0x56a6: true, 0x56b0: true, 0x56b1: true,
	0x56ba: true, 0x56bb: true, 0x56bc: true, 0x56bd: true,
	// DG2-G12: Arc A570M/A530M, Arc Pro A60.
	0x5696: true, 0x5697: true, 0x56a3: true, 0x56a4: true, 0x56b2: true, 0x56b3: true,
	// BMG-G21: Arc B580/B570, Arc Pro B60/B50 ...; BMG-G31.
	0xe202: true, 0xe209: true, 0xe20b: true, 0xe20c: true, 0xe20d: true, 0xe210: true, 0xe211: true,
	0xe212: true, 0xe215: true, 0xe216: true, 0xe220: true, 0xe221: true, 0xe222: true, 0xe223: true,
}

// amdIntegratedGPUs are AMD APU graphics by device id, for nodes without a KFD topology to ask (pci.ids, and
// the amdgpu driver's own tables for the older ones): Carrizo 9870/9874-9877, Stoney 98e4, Raven 15dd,
// Picasso/Raven2 15d8, Renoir 1636, Cezanne 1638, Lucienne 164c, Van Gogh 163f, Rembrandt 1681, Raphael 164e,
// Mendocino 1506, Phoenix 15bf/15c8, Granite Ridge 13c0, Strix Point 150e, Strix Halo 1586.
var amdIntegratedGPUs = map[uint16]bool{
	0x9870: true, 0x9874: true, 0x9875: true, 0x9876: true, 0x9877: true, 0x98e4: true,
	0x15dd: true, 0x15d8: true, 0x1636: true, 0x1638: true, 0x164c: true, 0x163f: true, 0x1681: true,
	0x164e: true, 0x1506: true, 0x15bf: true, 0x15c8: true, 0x13c0: true, 0x150e: true, 0x1586: true,
}

// KFD's gfx_target_version is major*10000 + minor*100 + stepping, stepping a hex digit read as a number
// (gfx90a: 90010, gfx942: 90402, gfx1036: 100306).

// amdAPUTargets are the gfx targets LLVM's AMDGPUUsage processor table marks APU only: Carrizo gfx801, Raven
// gfx902/gfx909, Renoir gfx90c, Cyan Skillfish gfx1013, Van Gogh gfx1033, Rembrandt gfx1035, Raphael and
// Granite Ridge gfx1036, Mendocino gfx1037, Phoenix gfx1103, Strix gfx1150/gfx1151/gfx1152/gfx1153.
var amdAPUTargets = map[int]bool{
	80001: true, 90002: true, 90009: true, 90012: true, 100103: true, 100303: true, 100305: true, 100306: true,
	100307: true, 110003: true, 110500: true, 110501: true, 110502: true, 110503: true,
}

// amdDataCentreTargets are the Instinct (CDNA) and MI50/MI60 targets: gfx906, gfx908 (MI100), gfx90a (MI200),
// gfx940/941/942 (MI300A, MI300X, MI325X), gfx950 (MI350). An APU node with one of them is an MI300A: an
// accelerator.
var amdDataCentreTargets = map[int]bool{
	90006: true, 90008: true, 90010: true, 90400: true, 90401: true, 90402: true, 90500: true,
}

// nvlinkC2CGPUs are NVIDIA GPUs that reach host memory over NVLink-C2C (a Grace CPU beside them), from the PCI
// id database (pci.ids): GH200 2342 (96/120/480 GB), GH200 2348 (144G HBM3e), GB200 2941, GB300 31c2.
var nvlinkC2CGPUs = map[uint16]bool{0x2342: true, 0x2348: true, 0x2941: true, 0x31c2: true}
