// The drivers of one daemon: a pool is per image and driver, so a daemon can
// serve ns and vm pools side by side. The daemon's --driver is opened at start
// (so its errors stop the start); the other on first use.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/error.h"
#include "image/store.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/vm/vm_driver.h"

namespace wb::daemon {

class DriverSet {
 public:
  DriverSet(NsDriverOptions ns, vm::VmDriverOptions vm, ImageStore* store)
      : ns_opts_(std::move(ns)), vm_opts_(std::move(vm)), store_(store) {}
  // Thread-safe (the pool's creation threads call it).
  [[nodiscard]] Result<Driver*> Get(const std::string& name);
  // The vm driver's template status when it runs with snapshot on.
  std::optional<vm::TemplateStatus> VmTemplateStatus();

 private:
  std::mutex mu_;
  NsDriverOptions ns_opts_;
  vm::VmDriverOptions vm_opts_;
  ImageStore* store_;
  std::unique_ptr<NsDriver> ns_;
  std::unique_ptr<vm::VmDriver> vm_;
};

}  // namespace wb::daemon
