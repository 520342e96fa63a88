// warmbox template build-debian NAME [--packages P,...] [--force]: a template
// image from Debian packages (image/debian_template.h), built by the image
// helper (warmbox-image build-debian) on our stdio.
#include "cli/verbs.h"
#include "image/debian_template.h"
#include "image/image_tool.h"

namespace wb::cli {

Action AddTemplate(CLI::App& app) {
  struct Opts {
    std::string name;
    std::vector<std::string> packages;
    bool force = false, quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("template", "build template images");
  sub->require_subcommand(1);
  CLI::App* deb = sub->add_subcommand(
      "build-debian",
      "build an image from Debian packages with mmdebstrap (bash, coreutils, procps, python3, "
      "ca-certificates and the account user); a no-op when it is up to date");
  deb->add_option("NAME", o->name, "image name, e.g. base")->required();
  deb->add_option("--packages", o->packages, "more packages, comma-separated (repeatable)")
      ->allow_extra_args(false);
  deb->add_flag("--force", o->force, "build even when the image is up to date");
  deb->add_flag("-q,--quiet", o->quiet, "no mmdebstrap output");
  return [=](const GlobalOptions& g) {
    // Bad input is refused here, before the helper starts.
    if (auto v = ImageStore::ValidateName(o->name); !v.ok()) return ReportError(v.error());
    for (const auto& l : o->packages) {
      if (auto p = ParsePackageList(l); !p.ok()) return ReportError(p.error());
    }
    ImageToolCall call{g.image_tool_path, g.state_dir, g.uid_base, {}};
    if (o->quiet) call.args.push_back("--quiet");
    call.args.push_back("build-debian");
    // One word each: a list like "--help" stays the option's value.
    for (const auto& l : o->packages) call.args.push_back("--packages=" + l);
    if (o->force) call.args.push_back("--force");
    call.operands = {o->name};
    auto rc = ExecImageTool(call);
    if (!rc.ok()) return ReportError(rc.error());
    return *rc == 0 ? 0 : kExitWarmboxError;
  };
}

}  // namespace wb::cli
