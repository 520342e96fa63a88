// The image store.
//
//   STATE/images/<escaped name>/image.json   metadata (name, uid base, layers, config)
//   STATE/images/<escaped name>/rootfs/      the unpacked tree (today's single layer)
//
// Image files are owned by the sandbox's uid range on disk (uid u inside is
// uid_base+u on the host), so the overlay that a sandbox mounts in its user
// namespace shows them with their real owners, and root in the sandbox owns
// nothing on the host. OCI images (a later issue) will list shared layer dirs
// under STATE/layers/ in "layers"; the driver already takes a list of lower
// dirs.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "base/error.h"

namespace wb {

inline constexpr const char* kDefaultImage = "busybox";

struct ImageConfig {
  std::vector<std::string> env;
  std::string working_dir;
  std::string user;
};

struct Image {
  std::string name;
  std::vector<std::string> lower_dirs;  // absolute, top layer first
  uint32_t uid_base = 0;
  std::string source;
  std::string created;  // RFC 3339
  ImageConfig config;
};

class ImageStore {
 public:
  ImageStore(std::string state_dir, uint32_t uid_base)
      : state_dir_(std::move(state_dir)), uid_base_(uid_base) {}

  // The built-in default image is created on first use.
  [[nodiscard]] Result<Image> Get(const std::string& name);
  [[nodiscard]] Result<std::vector<Image>> List();
  // Cheap: the default image always "exists" (it is built on first use).
  bool Exists(const std::string& name) const;
  // Copies DIR into the store (ownership shifted into the sandbox range).
  [[nodiscard]] Result<Image> ImportDir(const std::string& name, const std::string& dir);

  static Result<void> ValidateName(const std::string& name);
  std::string ImagesDir() const { return state_dir_ + "/images"; }

 private:
  Result<Image> Load(const std::string& dir);
  // Moves a finished tmp dir into place (atomic; the first of two racing
  // creators wins and the other's copy is dropped).
  Result<Image> Commit(const std::string& name, const std::string& tmp, const std::string& source);

  std::string state_dir_;
  uint32_t uid_base_;
  std::mutex build_mu_;  // one build of the default image at a time in this process
};

}  // namespace wb
