// The drivers of one daemon: a pool is per image and driver, so a daemon can
// serve ns and vm pools side by side. The daemon's --driver is opened at start
// (so its errors stop the start); the other on first use.
#pragma once

#include <array>
#include <memory>
#include <mutex>
#include <string>

#include "base/error.h"
#include "image/store.h"
#include "proto/pool_proto.h"
#include "sandbox/driver_factory.h"

namespace wb::daemon {

class DriverSet {
 public:
  // A daemon's ns driver makes networks ahead (NsDriverOptions::spare_network):
  // it serves many sandboxes, often with the same policy.
  DriverSet(NsDriverOptions ns, vm::VmDriverOptions vm, ImageStore* store)
      : opts_{DriverKind::kNs, std::move(ns), std::move(vm)}, store_(store) {
    opts_.ns.spare_network = true;
  }
  // Thread-safe (the pool's creation threads call it).
  [[nodiscard]] Result<Driver*> Get(const std::string& name);
  // The driver's own status added to a pool's stats (Driver::AnnotateStat),
  // when the pool's driver is open.
  void AnnotateStat(proto::ImageStat& stat);

 private:
  std::mutex mu_;
  DriverOptions opts_;
  ImageStore* store_;
  std::array<std::unique_ptr<Driver>, 2> drivers_;  // by DriverKind
};

}  // namespace wb::daemon
