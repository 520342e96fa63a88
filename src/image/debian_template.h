// Templates: images warmbox builds itself from Debian packages (mmdebstrap
// from the host's apt sources), for machines that reach no container
// registry. `warmbox template build-debian NAME` builds one; the daemon
// builds a known template (the table below) on first use, as it pulls a
// missing image. Pure planning here (unit-tested); the helper
// (src/imagetool/template.cc) runs it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "image/services.h"
#include "image/store.h"

namespace wb {

// What every template has.
inline constexpr std::string_view kTemplatePackages[] = {"bash", "ca-certificates", "coreutils",
                                                         "procps", "python3"};
// The account every template has, as E2B's images have it.
inline constexpr const char* kTemplateUser = "user";
inline constexpr const char* kTemplateHome = "/home/user";
inline constexpr unsigned kTemplateUid = 1000;

// The code interpreter (docs/e2b.md, "Code interpreter"): warmbox's server
// (src/interp/, built into warmbox-image) is copied to kInterpDir of a
// template that has it, and declared as a pre-boot service in the image
// config's kServicesLabel (image/services.h), with its port as ready_port.
inline constexpr const char* kInterpDir = "/usr/lib/warmbox/interp";
inline constexpr unsigned kInterpPort = 49999;

// The templates the daemon builds when a sandbox asks for them and they are
// missing: name -> packages beyond kTemplatePackages.
struct KnownTemplate {
  std::string_view name;
  std::vector<std::string_view> packages;
  bool code_interpreter = false;  // ships warmbox's code interpreter server
};
const std::vector<KnownTemplate>& KnownTemplates();
// nullptr unless name is in the table (exactly: "base", not "base:latest").
const KnownTemplate* FindKnownTemplate(std::string_view name);

// A Debian package name (policy 5.6.7: [a-z0-9][a-z0-9+.-]+).
[[nodiscard]] Result<void> ValidatePackageName(std::string_view name);
// "a,b, c" (--packages; may be given several times) -> the names, validated.
[[nodiscard]] Result<std::vector<std::string>> ParsePackageList(std::string_view list);

// What one build makes.
struct TemplateSpec {
  std::string name;                   // the image name it is stored under
  std::string suite;                  // the host's codename: bookworm
  std::vector<std::string> packages;  // sorted, unique: the defaults, the table's, extra
  bool code_interpreter = false;      // the table's
  // "debian-template v1 suite=bookworm variant=apt packages=a,b,c": the
  // image's source in the store and the cache key. Two builds with the same
  // key make the same image (but for package updates in the archive); v1 is
  // bumped when the recipe (variant, user, config) changes.
  std::string Key() const;
  // The stored image's source: Key(), and for a code interpreter template
  // " interp=<digest of the server's files>" too, so a new server rebuilds
  // the image (from the cached root filesystem: the key of that is Key()).
  std::string Source(std::string_view interp_digest) const;
};
[[nodiscard]] Result<TemplateSpec> PlanTemplate(const std::string& name, const std::string& suite,
                                                const std::vector<std::string>& extra);

// The host's release codename (VERSION_CODENAME of /etc/os-release's text).
[[nodiscard]] Result<std::string> OsReleaseCodename(const std::string& os_release);

// The host's apt sources for suite, as one-line entries for the chroot's
// sources.list: "deb" entries of suite and its suite-* siblings (updates,
// security, backports) from sources.list-style and deb822 (.sources) texts;
// other releases and third-party repositories (their own suite names) are
// left out. A Signed-By keyring path is kept; an inline key is dropped
// (mmdebstrap finds the keyring itself).
struct AptSourceText {
  std::string text;
  bool deb822 = false;  // a .sources file
};
std::vector<std::string> ChrootSources(const std::vector<AptSourceText>& files,
                                       const std::string& suite);

// mmdebstrap's argv (argv[0] = "mmdebstrap"): variant apt (the Essential
// packages and apt, so a template can apt-get more), the spec's packages,
// the account user (uid 1000, /home/user, bash), the host's hostname and
// resolv.conf replaced; output is a tar (compressed by its suffix);
// sources_file (one-line entries) or, when empty, mmdebstrap's default
// mirror for the suite.
std::vector<std::string> MmdebstrapArgv(const TemplateSpec& spec, const std::string& output,
                                        const std::string& sources_file);

// The image config of every template: User user, WorkingDir /home/user,
// Env PATH and LANG, Cmd /bin/bash; a code interpreter template's Cmd is
// InterpArgv() (the deferred main, until pre-boot services start it).
ImageConfig TemplateImageConfig(bool code_interpreter = false);

// python3 /usr/lib/warmbox/interp/server.py --port 49999
std::vector<std::string> InterpArgv();

// The image config's Labels: {kServicesLabel: [{"name":"interp","argv":...}]}
// for a code interpreter template, else none.
std::vector<std::pair<std::string, std::string>> TemplateLabels(bool code_interpreter);

}  // namespace wb
