#include "daemon/drivers.h"

namespace wb::daemon {

Result<Driver*> DriverSet::Get(const std::string& name) {
  const DriverKind kind = WB_TRY(ParseDriverKind(name));
  std::lock_guard<std::mutex> lock(mu_);
  auto& d = drivers_[static_cast<size_t>(kind)];
  if (!d) {
    DriverOptions o = opts_;
    o.kind = kind;
    d = WB_TRY(OpenDriver(o, store_));
  }
  return d.get();
}

void DriverSet::AnnotateStat(proto::ImageStat& stat) {
  auto kind = ParseDriverKind(stat.driver);
  if (!kind.ok()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (const auto& d = drivers_[static_cast<size_t>(*kind)]) d->AnnotateStat(stat);
}

}  // namespace wb::daemon
