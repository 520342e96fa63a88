// The helper's two operations: pull an image from a registry, import an
// image archive (docker-archive or OCI layout, dir or tar).
#pragma once

#include <string>
#include <vector>

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
// How an import is recorded (the defaults: `warmbox image import`).
struct ImportOptions {
  // Stored under name as given ("base"), not its canonical reference
  // ("docker.io/library/base:latest"): an image built here (a template) is
  // on no registry, and a lookup of the short name finds it first.
  bool local_name = false;
  std::string source;  // the image's source in the store (default "<kind> <file>")
};
// name may be empty: the archive's own tag is used (docker-archive RepoTags,
// or an OCI ref.name annotation that is a full reference).
[[nodiscard]] Result<Image> Import(ImageStore& store, const std::string& file,
                                   const std::string& name, Progress& p,
                                   const ImportOptions& o = {});

// warmbox-image build-debian: a template from Debian packages
// (image/debian_template.h), cached in the store under its spec's key.
struct TemplateBuild {
  std::string name;
  std::vector<std::string> extra_packages;
  bool force = false;  // build even when the stored image has the same key
  bool quiet = false;  // mmdebstrap's output is only kept for errors
};
[[nodiscard]] Result<Image> BuildDebianTemplate(ImageStore& store, const TemplateBuild& b,
                                                Progress& p);

}  // namespace wb::imagetool
