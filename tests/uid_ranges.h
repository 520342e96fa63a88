// The host uid ranges of the tests: one per test binary (and per Python suite),
// none overlapping, so a test that counts the processes of its range (leak and
// cleanup checks) counts only its own, whatever else runs on the host: other
// test binaries under `ctest -j`, another checkout's tests, a warmbox daemon on
// the default range. Each range starts at `base` and holds `count` ids
// (kSlotsIds for a binary whose sandboxes each get their own range, the
// default; kUidCount for the vm driver's and for daemons started with
// WARMBOX_UID_SLOTS=0, where every sandbox shares one range).
// uid_ranges_test checks that no two overlap and that the Python suites, which
// cannot include this header, use the ranges listed here for them.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace wb::testing {

enum class UidUser {
  kDefault,  // warmbox's default base: a daemon on the host, never a test
  kImageTest,
  kCliTest,
  kOciRegistryTest,
  kPoolTest,
  kPoolSoakTest,
  kNsDriverTest,
  kIsolationTest,
  kVmSnapshotTest,
  kVmTest,
  kPoolFaultTest,
  kActivationTest,
  kHttpApiTest,         // tests/http/test_http_api.py: one range per daemon class
  kHttpPrometheusTest,  // tests/http/test_prometheus.py
  kPythonClientTest,    // clients/python/tests/_support.py
  kLiveOpsTest,
  kLiveTest,
  kPythonLiveTest,  // clients/python/tests/test_sandbox.py
  kHttpLiveTest,    // tests/http/test_http_live.py
  kVmLiveTest,
  kE2bSdkTest,  // tests/e2b/daemon.mjs (the E2B SDK's tests)
  kTemplateTest,
  kMcpTest,  // tests/mcp/mcp_daemon.mjs (the MCP SDK's and Inspector's tests)
  kServicesTest,
  kUidSlotsTest,
  kVmJailTest,  // vm_jail_test, and base_test's jail test (ChildJailTest)
  kNetTest,
  kPortsTest,
  kNetSurfaceTest,
  kVmNetTest,
  kOutputSpillTest,
  kCount_,
};

struct UidRange {
  UidUser user;
  std::string_view owner;  // the ctest name (or binary) that uses the range
  uint32_t base;
  uint32_t count;
};

inline constexpr uint32_t kRangeIds = 65536;  // = kUidCount, one sandbox range
// A daemon of the default --uid-slots (128): slot 0 (the store's) and one
// range per sandbox (sandbox/ns/uid_slots.h), = UidSpan(kDefaultUidSlots).
inline constexpr uint32_t kSlotsIds = 129 * kRangeIds;

// In the order of UidUser.
inline constexpr std::array<UidRange, static_cast<size_t>(UidUser::kCount_)> kUidRanges = {{
    {UidUser::kDefault, "(warmbox default)", 1000000000, kRangeIds},
    {UidUser::kImageTest, "image_test", 1050000000, 2 * kRangeIds},  // a second, mismatched base
    {UidUser::kCliTest, "cli_test", 1100000000, kSlotsIds},
    {UidUser::kOciRegistryTest, "oci_registry_test", 1200000000, kSlotsIds},
    {UidUser::kPoolTest, "pool_test", 1250000000, kSlotsIds},
    {UidUser::kPoolSoakTest, "pool_soak_test", 1300000000, kSlotsIds},
    {UidUser::kNsDriverTest, "ns_driver_test", 1400000000, kSlotsIds},
    {UidUser::kIsolationTest, "isolation_test", 1500000000, kSlotsIds},
    {UidUser::kVmSnapshotTest, "vm_snapshot_test", 1510000000, kRangeIds},
    {UidUser::kVmTest, "vm_test", 1550000000, kRangeIds},
    {UidUser::kPoolFaultTest, "pool_fault_test", 1600000000, kSlotsIds},
    {UidUser::kActivationTest, "activation_test", 1620000000, kSlotsIds},
    // Classes 70000 apart: their daemons run with WARMBOX_UID_SLOTS=0 (one range).
    {UidUser::kHttpApiTest, "http_api_test", 1650000000, 280000},
    {UidUser::kHttpPrometheusTest, "http_prometheus_test", 1650280000, kRangeIds},
    {UidUser::kPythonClientTest, "python_client_test", 1700000000, kSlotsIds},
    {UidUser::kLiveOpsTest, "live_ops_test", 1710000000, kSlotsIds},
    // 1700000000 is python_client_test's: the next free one.
    {UidUser::kLiveTest, "live_test", 1720000000, kSlotsIds},
    {UidUser::kPythonLiveTest, "python_client_test (test_sandbox.py)", 1730000000, kSlotsIds},
    {UidUser::kHttpLiveTest, "http_live_api_test", 1740000000, kSlotsIds},
    {UidUser::kVmLiveTest, "vm_live_test", 1750000000, kRangeIds},
    {UidUser::kE2bSdkTest, "e2b_sdk_test", 1760000000, kSlotsIds},
    {UidUser::kTemplateTest, "template_test", 1770000000, kSlotsIds},
    {UidUser::kMcpTest, "mcp_sdk_test", 1780000000, kSlotsIds},
    {UidUser::kServicesTest, "services_test", 1800000000, kSlotsIds},
    {UidUser::kUidSlotsTest, "uid_slots_root_test", 1790000000, kSlotsIds},
    {UidUser::kVmJailTest, "vm_jail_test", 1820000000, kRangeIds},
    // The sandboxes' ranges (slots 0..128), then the network helpers' group
    // ids above them (sandbox/net: NetIds).
    {UidUser::kNetTest, "net_test", 1810000000, kSlotsIds + kRangeIds},
    {UidUser::kPortsTest, "ports_test", 1830000000, kSlotsIds},
    // As net_test's: the sandboxes' slots, then the network helpers' groups.
    {UidUser::kNetSurfaceTest, "net_surface_test (tests/e2b/network.test.mjs)", 1840000000,
     kSlotsIds + kRangeIds},
    // Its image's range, then the passt group ids (VmDriverOptions::net_gid_base).
    {UidUser::kVmNetTest, "vm_net_test", 1850000000, 2 * kRangeIds},
    {UidUser::kOutputSpillTest, "output_spill_test", 1860000000, kSlotsIds},
}};

// The first host uid of u's range.
constexpr uint32_t UidBase(UidUser u) { return kUidRanges[static_cast<size_t>(u)].base; }

}  // namespace wb::testing
