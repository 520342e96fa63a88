// The one place that knows every driver: opens the one an option names.
#pragma once

#include <memory>

#include "base/error.h"
#include "image/store.h"
#include "sandbox/driver.h"
#include "sandbox/ns/ns_driver.h"
#include "sandbox/vm/vm_driver.h"

namespace wb {

// The options of every driver; kind picks the one opened.
struct DriverOptions {
  DriverKind kind = DriverKind::kNs;
  NsDriverOptions ns;
  vm::VmDriverOptions vm;
};

[[nodiscard]] Result<std::unique_ptr<Driver>> OpenDriver(const DriverOptions& opts,
                                                         ImageStore* store);

}  // namespace wb
