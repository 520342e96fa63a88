// warmbox-image: the image helper (pull, import, build-debian). Dynamically linked, since
// libarchive and libcurl cannot be linked statically here; `warmbox image
// pull|import` and the pool daemon exec it.
#include <curl/curl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "base/log.h"
#include "base/strings.h"
#include "image/debian_template.h"
#include "image/store.h"
#include "imagetool/ops.h"

int main(int argc, char** argv) {
  using namespace wb;
  CLI::App app{"warmbox-image: pull and import images into warmbox's store"};
  app.require_subcommand(1);
  std::string state_dir = "/var/lib/warmbox", uid_base = "1000000000", log_level = "warn";
  bool quiet = false;
  app.add_option("--state-dir", state_dir, "state directory");
  app.add_option("--userns-base", uid_base, "first host uid of the sandboxes' range");
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error");
  app.add_flag("-q,--quiet", quiet, "no progress output");
  std::string ref, file, name;
  imagetool::PullOptions po;
  CLI::App* pull = app.add_subcommand("pull", "pull an image from a registry");
  pull->add_option("REF", ref, "image reference")->required();
  pull->add_flag("--insecure", po.insecure, "plain HTTP (loopback registries may always use it)");
  CLI::App* imp =
      app.add_subcommand("import", "import a docker-archive or OCI layout (dir or tar)");
  imp->add_option("FILE", file, "archive or directory")->required();
  imp->add_option("--name", name, "image reference to store it under");
  imagetool::TemplateBuild tb;
  std::vector<std::string> package_lists;
  CLI::App* deb = app.add_subcommand("build-debian",
                                     "build a template image from Debian packages (mmdebstrap)");
  deb->add_option("NAME", tb.name, "image name")->required();
  deb->add_option("--packages", package_lists, "more packages, comma-separated (repeatable)")
      ->allow_extra_args(false);
  deb->add_flag("--force", tb.force, "build even when the image is up to date");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  InitLogging(log_level);
  auto base = ParseUint(uid_base, "--userns-base");
  if (!base.ok() || *base == 0 || *base > 0xffffffffULL - 65536) {
    std::fprintf(stderr, "warmbox: --userns-base %s: expected a uid base\n", uid_base.c_str());
    return 125;
  }
  if (state_dir.empty() || state_dir.front() != '/') {
    std::fprintf(stderr, "warmbox: --state-dir %s: must be an absolute path\n", state_dir.c_str());
    return 125;
  }
  // Once, before any handle (libcurl's global state is not thread-safe to
  // set up lazily) and torn down at exit.
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    std::fprintf(stderr, "warmbox: curl_global_init failed\n");
    return 125;
  }
  struct CurlCleanup {
    ~CurlCleanup() { curl_global_cleanup(); }
  } curl_cleanup;
  ImageStore store(state_dir, static_cast<uint32_t>(*base));
  imagetool::Progress progress(!quiet && ::isatty(2));
  auto run = [&]() -> Result<Image> {
    if (pull->parsed()) return imagetool::Pull(store, ref, po, progress);
    if (imp->parsed()) return imagetool::Import(store, file, name, progress);
    tb.quiet = quiet;
    for (const auto& l : package_lists) {
      auto parsed = WB_TRY(ParsePackageList(l));
      tb.extra_packages.insert(tb.extra_packages.end(), parsed.begin(), parsed.end());
    }
    return imagetool::BuildDebianTemplate(store, tb, progress);
  };
  Result<Image> r = run();
  if (!r.ok()) {
    std::fprintf(stderr, "warmbox: %s\n", r.error().ToString().c_str());
    return 125;
  }
  std::printf("%s\n", r->name.c_str());
  return 0;
}
