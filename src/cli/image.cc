// warmbox image ls | inspect REF | rm REF... | prune | pull REF | import FILE | import-dir NAME DIR
//
// pull and import run the dynamically linked helper warmbox-image
// (libarchive, libcurl); the rest is the static CLI's own.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/verbs.h"
#include "image/image_tool.h"
#include "image/store.h"

namespace wb::cli {
namespace {

std::string Human(uint64_t bytes) {
  char buf[32];
  if (bytes >= (1u << 20)) {
    std::snprintf(buf, sizeof buf, "%.1fMB", static_cast<double>(bytes) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.1fkB", static_cast<double>(bytes) / 1e3);
  }
  return buf;
}

nlohmann::json ToJson(const Image& img) {
  return {{"name", img.name},
          {"digest", img.digest},
          {"source", img.source},
          {"created", img.created},
          {"uid_base", img.uid_base},
          {"size", img.size},
          {"layers", img.layer_digests},
          {"lower_dirs", img.lower_dirs},
          {"config", img.config.ToJson()}};
}

}  // namespace

Action AddImage(CLI::App& app) {
  struct Opts {
    std::string name, dir, ref, file;
    std::vector<std::string> refs;
    bool insecure = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("image", "manage images");
  sub->require_subcommand(1);
  CLI::App* ls = sub->add_subcommand("ls", "list images");
  CLI::App* inspect = sub->add_subcommand("inspect", "show an image's metadata as JSON");
  inspect->add_option("REF", o->ref, "image")->required();
  CLI::App* rm =
      sub->add_subcommand("rm", "remove images from the index (their layers go at the next prune)");
  rm->add_option("REF", o->refs, "images")->required();
  CLI::App* prune = sub->add_subcommand("prune", "delete blobs and layers no image uses");
  CLI::App* pull = sub->add_subcommand("pull", "pull an image from a registry");
  pull->add_option("REF", o->ref,
                   "image reference, e.g. python:3.12-slim or localhost:5000/team/img@sha256:...")
      ->required();
  pull->add_flag("--insecure", o->insecure, "plain HTTP (loopback registries may always use it)");
  pull->add_flag("-q,--quiet", o->quiet, "no progress output");
  CLI::App* imp =
      sub->add_subcommand("import", "import a docker-archive or OCI layout (directory or tar)");
  imp->add_option("FILE", o->file, "archive or directory")->required();
  imp->add_option("--name", o->name,
                  "image reference to store it under (default: the archive's tag)");
  imp->add_flag("-q,--quiet", o->quiet, "no progress output");
  CLI::App* impdir = sub->add_subcommand("import-dir", "import a directory tree as an image");
  impdir->add_option("NAME", o->name, "image name")->required();
  impdir->add_option("DIR", o->dir, "root directory of the image")->required();
  return [=](const GlobalOptions& g) {
    ImageStore store(g.state_dir, g.uid_base);
    if (ls->parsed()) {
      auto list = store.List();
      if (!list.ok()) return ReportError(list.error());
      std::printf("%-50s %-19s %-22s %9s %s\n", "NAME", "DIGEST", "CREATED", "SIZE", "SOURCE");
      bool has_default = false;
      for (const auto& img : *list) {
        has_default |= img.name == kDefaultImage;
        std::string digest = img.digest.empty() ? "-" : img.digest.substr(0, 19);
        std::printf("%-50s %-19s %-22s %9s %s\n", img.name.c_str(), digest.c_str(),
                    img.created.c_str(), img.size ? Human(img.size).c_str() : "-",
                    img.source.c_str());
      }
      if (!has_default) {
        std::printf("%-50s %-19s %-22s %9s %s\n", kDefaultImage, "-", "-", "-",
                    "built in (created on first use)");
      }
      return 0;
    }
    if (inspect->parsed()) {
      auto img = store.Get(o->ref);
      if (!img.ok()) return ReportError(img.error());
      std::printf("%s\n", ToJson(*img).dump(2).c_str());
      return 0;
    }
    if (rm->parsed()) {
      int rc = 0;
      for (const auto& r : o->refs) {
        const std::string name = store.Resolve(r);
        if (auto res = store.Remove(r); !res.ok()) {
          rc = ReportError(res.error());
        } else if (*res) {
          std::printf("%s\n", name.c_str());
        } else {
          std::printf("%s (its files stay until the sandboxes using them end)\n", name.c_str());
        }
      }
      return rc;
    }
    if (prune->parsed()) {
      auto rep = store.Prune();
      if (!rep.ok()) return ReportError(rep.error());
      std::printf("removed %zu blob(s) (%s), %zu layer dir(s), %zu temp file(s)\n", rep->blobs,
                  Human(rep->bytes).c_str(), rep->layers, rep->tmp);
      if (rep->in_use) {
        std::printf("kept %zu removed dir(s) that running sandboxes mount (deleted later)\n",
                    rep->in_use);
      }
      return 0;
    }
    if (pull->parsed() || imp->parsed()) {
      ImageToolCall call{g.image_tool_path, g.state_dir, g.uid_base, {}};
      if (o->quiet) call.args.push_back("--quiet");
      if (pull->parsed()) {
        call.args.push_back("pull");
        if (o->insecure) call.args.push_back("--insecure");
        call.operands = {o->ref};
      } else {
        call.args.push_back("import");
        // One word: a name like "--help" stays the option's value.
        if (!o->name.empty()) call.args.push_back("--name=" + o->name);
        call.operands = {o->file};
      }
      auto rc = ExecImageTool(call);
      if (!rc.ok()) return ReportError(rc.error());
      return *rc == 0 ? 0 : kExitWarmboxError;
    }
    if (impdir->parsed()) {
      auto img = store.ImportDir(o->name, o->dir);
      if (!img.ok()) return ReportError(img.error());
      std::printf("%s\n", img->name.c_str());
      return 0;
    }
    return kExitWarmboxError;
  };
}

}  // namespace wb::cli
