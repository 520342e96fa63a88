#include "sandbox/driver_factory.h"

namespace wb {

const char* DriverKindName(DriverKind k) {
  switch (k) {
    case DriverKind::kNs:
      return "ns";
    case DriverKind::kVm:
      return "vm";
  }
  return "ns";
}

Result<DriverKind> ParseDriverKind(std::string_view name, const std::string& what) {
  for (DriverKind k : {DriverKind::kNs, DriverKind::kVm}) {
    if (name == DriverKindName(k)) return k;
  }
  return Fail(ErrorCode::kInvalidArgument, what, std::string(name), "expected ns or vm");
}

DriverCapabilities CapabilitiesOf(DriverKind k) {
  switch (k) {
    case DriverKind::kNs:
      return NsDriver::kCapabilities;
    case DriverKind::kVm:
      return vm::VmDriver::kCapabilities;
  }
  return {};
}

Result<std::unique_ptr<Driver>> OpenDriver(const DriverOptions& opts, ImageStore* store) {
  switch (opts.kind) {
    case DriverKind::kNs:
      return std::unique_ptr<Driver>(WB_TRY(NsDriver::Open(opts.ns, store)));
    case DriverKind::kVm:
      return std::unique_ptr<Driver>(WB_TRY(vm::VmDriver::Open(opts.vm, store)));
  }
  return Fail("driver", DriverKindName(opts.kind), "unknown driver");
}

}  // namespace wb
