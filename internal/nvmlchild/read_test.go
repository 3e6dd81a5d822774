package nvmlchild

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/stretchr/testify/require"

	"github.com/pinmemory/pin-feature-daemon/internal/nvmlsnap"
)

func TestNVMLAdapterNeverCallsC2CHandlerOnMocks(t *testing.T) {
	t.Parallel()
	g := &Library{lib: &mock.Interface{}}
	for _, tc := range []struct {
		name        string
		links       uint32
		active      bool
		unsupported bool
		want        bool
	}{
		{name: "c2c attached", links: 1, active: true, want: true},
		{name: "links down", links: 1},
		{name: "no links", links: 0, active: true},
		{name: "fields unknown", unsupported: true},
	} {
		on, err := g.c2cMode(c2cDevice(tc.links, tc.active, tc.unsupported))
		if tc.unsupported {
			require.ErrorIs(t, err, nvmlsnap.ErrNotSupported, tc.name)
			continue
		}
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, on, tc.name)
	}
}

// c2cDevice is a mock device that answers the C2C field values, and panics if the C2C mode handler (which
// calls into C) is used.
func c2cDevice(links uint32, active, unsupported bool) *mock.Device {
	return &mock.Device{
		GetFieldValuesFunc: func(values []nvml.FieldValue) nvml.Return {
			for i := range values {
				v := &values[i]
				if unsupported {
					v.NvmlReturn = uint32(nvml.ERROR_NOT_SUPPORTED)
					continue
				}
				v.ValueType = uint32(nvml.VALUE_TYPE_UNSIGNED_INT)
				switch v.FieldId {
				case nvml.FI_DEV_C2C_LINK_COUNT:
					binary.LittleEndian.PutUint32(v.Value[:4], links)
				case nvml.FI_DEV_C2C_LINK_GET_STATUS:
					if active {
						binary.LittleEndian.PutUint32(v.Value[:4], 1)
					}
				}
			}
			return nvml.SUCCESS
		},
		GetC2cModeInfoVFunc: func() nvml.C2cModeInfoHandler {
			panic("GetC2cModeInfoV must not be used with a mock")
		},
	}
}

func TestNVMLReturnError(t *testing.T) {
	t.Parallel()
	require.ErrorIs(t, &nvmlReturnError{Op: "x", Return: nvml.ERROR_NOT_SUPPORTED}, nvmlsnap.ErrNotSupported)
	require.ErrorIs(t, &nvmlReturnError{Op: "x", Return: nvml.ERROR_FUNCTION_NOT_FOUND}, nvmlsnap.ErrNotSupported)
	require.False(t, errors.Is(&nvmlReturnError{Op: "x", Return: nvml.ERROR_UNKNOWN}, nvmlsnap.ErrNotSupported))
	require.Equal(t, "nvml get uuid: ERROR_NO_PERMISSION",
		(&nvmlReturnError{Op: "get uuid", Return: nvml.ERROR_NO_PERMISSION}).Error())
}

func TestFieldValue(t *testing.T) {
	t.Parallel()
	mk := func(vt nvml.ValueType, put func(b []byte)) nvml.FieldValue {
		v := nvml.FieldValue{FieldId: 170, ValueType: uint32(vt)}
		put(v.Value[:])
		return v
	}
	le := binary.LittleEndian
	tests := []struct {
		name    string
		v       nvml.FieldValue
		want    uint64
		wantErr bool
	}{
		{"uint", mk(nvml.VALUE_TYPE_UNSIGNED_INT, func(b []byte) { le.PutUint32(b, 10) }), 10, false},
		{"ulong", mk(nvml.VALUE_TYPE_UNSIGNED_LONG, func(b []byte) { le.PutUint64(b, 1<<40) }), 1 << 40, false},
		{"ulonglong", mk(nvml.VALUE_TYPE_UNSIGNED_LONG_LONG, func(b []byte) { le.PutUint64(b, 7) }), 7, false},
		{"slonglong", mk(nvml.VALUE_TYPE_SIGNED_LONG_LONG, func(b []byte) { le.PutUint64(b, 3) }), 3, false},
		{"negative slonglong", mk(nvml.VALUE_TYPE_SIGNED_LONG_LONG, func(b []byte) { le.PutUint64(b, math.MaxUint64) }), 0, true},
		{"sint", mk(nvml.VALUE_TYPE_SIGNED_INT, func(b []byte) { le.PutUint32(b, 2) }), 2, false},
		{"ushort", mk(nvml.VALUE_TYPE_UNSIGNED_SHORT, func(b []byte) { le.PutUint16(b, 9) }), 9, false},
		{"double", mk(nvml.VALUE_TYPE_DOUBLE, func(b []byte) { le.PutUint64(b, math.Float64bits(4)) }), 4, false},
		{"bad type", mk(nvml.ValueType(42), func([]byte) {}), 0, true},
		{"field not supported", nvml.FieldValue{NvmlReturn: uint32(nvml.ERROR_NOT_SUPPORTED)}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := fieldValue(tc.v)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestGPUIsLostTravelsInTheSnapshot: NVML_ERROR_GPU_IS_LOST, from the handle or from a device call, is marked
// on the fact's error and survives the JSON the child sends, so the detector can tell a lost GPU from a
// failed read.
func TestGPUIsLostTravelsInTheSnapshot(t *testing.T) {
	t.Parallel()
	lost := &mock.Device{
		GetPciInfoFunc: func() (nvml.PciInfo, nvml.Return) {
			var p nvml.PciInfo
			for i, c := range "00000000:18:00.0" {
				p.BusId[i] = int8(c)
			}
			return p, nvml.SUCCESS
		},
		GetUUIDFunc: func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST },
	}
	lib := FromInterface(&mock.Interface{
		DeviceGetCountFunc: func() (int, nvml.Return) { return 2, nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i == 0 {
				return lost, nvml.SUCCESS
			}
			return nil, nvml.ERROR_GPU_IS_LOST
		},
	})
	b, err := json.Marshal(lib.Read())
	require.NoError(t, err)
	var snap nvmlsnap.Snapshot
	require.NoError(t, json.Unmarshal(b, &snap))
	require.Len(t, snap.Devices, 2)
	_, err = snap.Devices[0].UUID.Get()
	require.ErrorIs(t, err, nvmlsnap.ErrGPULost)
	require.NotErrorIs(t, err, nvmlsnap.ErrNotSupported)
	bus, err := snap.Devices[0].PCIBusID.Get()
	require.NoError(t, err)
	require.Equal(t, "00000000:18:00.0", bus)
	require.ErrorIs(t, snap.Devices[1].Handle, nvmlsnap.ErrGPULost)
	require.Contains(t, snap.Devices[1].Handle.Error(), "ERROR_GPU_IS_LOST")
}
