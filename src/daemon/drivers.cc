#include "daemon/drivers.h"

namespace wb::daemon {

Result<Driver*> DriverSet::Get(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  if (name == "ns") {
    if (!ns_) ns_ = WB_TRY(NsDriver::Open(ns_opts_, store_));
    return static_cast<Driver*>(ns_.get());
  }
  if (name == "vm") {
    if (!vm_) vm_ = WB_TRY(vm::VmDriver::Open(vm_opts_, store_));
    return static_cast<Driver*>(vm_.get());
  }
  return Fail("driver", name, "expected ns or vm");
}

std::optional<vm::TemplateStatus> DriverSet::VmTemplateStatus() {
  std::lock_guard<std::mutex> l(mu_);
  if (!vm_ || !vm_opts_.snapshot) return std::nullopt;
  return vm_->template_status();
}

}  // namespace wb::daemon
