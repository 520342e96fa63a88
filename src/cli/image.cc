// warmbox image ls | import-dir NAME DIR
#include <cstdio>

#include "cli/verbs.h"
#include "image/store.h"

namespace wb::cli {

Action AddImage(CLI::App& app) {
  struct Opts {
    std::string name, dir;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("image", "manage images");
  sub->require_subcommand(1);
  CLI::App* ls = sub->add_subcommand("ls", "list images");
  CLI::App* imp = sub->add_subcommand("import-dir", "import a directory tree as an image");
  imp->add_option("NAME", o->name, "image name")->required();
  imp->add_option("DIR", o->dir, "root directory of the image")->required();
  return [o, ls, imp](const GlobalOptions& g) {
    ImageStore store(g.state_dir, g.uid_base);
    if (ls->parsed()) {
      auto list = store.List();
      if (!list.ok()) return ReportError(list.error());
      std::printf("%-30s %-22s %s\n", "NAME", "CREATED", "SOURCE");
      bool has_default = false;
      for (const auto& img : *list) {
        has_default |= img.name == kDefaultImage;
        std::printf("%-30s %-22s %s\n", img.name.c_str(), img.created.c_str(), img.source.c_str());
      }
      if (!has_default) {
        std::printf("%-30s %-22s %s\n", kDefaultImage, "-", "built in (created on first use)");
      }
      return 0;
    }
    if (imp->parsed()) {
      auto img = store.ImportDir(o->name, o->dir);
      if (!img.ok()) return ReportError(img.error());
      std::printf("%s\n", img->name.c_str());
      return 0;
    }
    return kExitWarmboxError;
  };
}

}  // namespace wb::cli
