// The helper's two operations: pull an image from a registry, import an
// image archive (docker-archive or OCI layout, dir or tar).
#pragma once

#include <string>

#include "base/error.h"
#include "image/store.h"
#include "imagetool/progress.h"

namespace wb::imagetool {

struct PullOptions {
  bool insecure = false;
  std::string os = "linux", arch = "amd64";
};

[[nodiscard]] Result<Image> Pull(ImageStore& store, const std::string& ref, const PullOptions& o,
                                 Progress& p);
// name may be empty: the archive's own tag is used (docker-archive RepoTags,
// or an OCI ref.name annotation that is a full reference).
[[nodiscard]] Result<Image> Import(ImageStore& store, const std::string& file,
                                   const std::string& name, Progress& p);

}  // namespace wb::imagetool
