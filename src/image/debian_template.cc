#include "image/debian_template.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "base/strings.h"

namespace wb {

const std::vector<KnownTemplate>& KnownTemplates() {
  // E2B's default template: Sandbox.create() with no template asks for it.
  // E2B's code interpreter (@e2b/code-interpreter's default template): the
  // server's Python kernel, the libraries agents plot and tabulate with, and
  // Node for JavaScript contexts. Hard dependencies only (no Recommends).
  static const std::vector<KnownTemplate> table = {
      {"base", {}},
      {"code-interpreter-v1",
       {"python3-ipykernel", "python3-jupyter-client", "python3-numpy", "python3-pandas",
        "python3-matplotlib", "nodejs"},
       true},
  };
  return table;
}

const KnownTemplate* FindKnownTemplate(std::string_view name) {
  for (const auto& t : KnownTemplates()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

Result<void> ValidatePackageName(std::string_view name) {
  auto bad = [&](const std::string& why) {
    return Fail(ErrorCode::kInvalidArgument, "package name", std::string(name), why);
  };
  if (name.size() < 2) return bad("must be at least 2 characters");
  if (name.size() > 128) return bad("longer than 128 characters");
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(name.front())) return bad("must start with a lower-case letter or a digit");
  for (char c : name) {
    if (!alnum(c) && c != '+' && c != '-' && c != '.')
      return bad("may contain only a-z, 0-9, '+', '-' and '.'");
  }
  return Ok();
}

Result<std::vector<std::string>> ParsePackageList(std::string_view list) {
  std::vector<std::string> out;
  for (const auto& part : Split(list, ',')) {
    std::string_view p = Trim(part);
    if (p.empty()) continue;  // "a,,b" and a trailing comma
    WB_RETURN_IF_ERROR(ValidatePackageName(p));
    out.emplace_back(p);
  }
  return out;
}

std::string TemplateSpec::Key() const {
  std::string list;
  for (const auto& p : packages) list += (list.empty() ? "" : ",") + p;
  return "debian-template v1 suite=" + suite + " variant=apt packages=" + list;
}

Result<TemplateSpec> PlanTemplate(const std::string& name, const std::string& suite,
                                  const std::vector<std::string>& extra) {
  WB_RETURN_IF_ERROR(ImageStore::ValidateName(name));
  // A stored image of that name would replace the built-in one everywhere.
  if (name == kDefaultImage)
    return Fail(ErrorCode::kInvalidArgument, "template", name,
                "is the built-in default image's name; choose another");
  if (suite.empty() || suite.find_first_of(" \t\n/") != std::string::npos)
    return Fail(ErrorCode::kInvalidArgument, "template " + name, suite, "not a release codename");
  std::set<std::string> all(std::begin(kTemplatePackages), std::end(kTemplatePackages));
  bool interp = false;
  if (const KnownTemplate* t = FindKnownTemplate(name)) {
    for (auto p : t->packages) all.emplace(p);
    interp = t->code_interpreter;
  }
  for (const auto& p : extra) {
    WB_RETURN_IF_ERROR(ValidatePackageName(p));
    all.insert(p);
  }
  // useradd (passwd) makes the account: required priority, but not Essential.
  all.insert("passwd");
  return TemplateSpec{name, suite, std::vector<std::string>(all.begin(), all.end()), interp};
}

std::string TemplateSpec::Source(std::string_view interp_digest) const {
  if (!code_interpreter) return Key();
  return Key() + " interp=" + std::string(interp_digest);
}

Result<std::string> OsReleaseCodename(const std::string& os_release) {
  for (const auto& line : Split(os_release, '\n')) {
    std::string_view l = Trim(line);
    if (!StartsWith(l, "VERSION_CODENAME=")) continue;
    l.remove_prefix(17);
    if (l.size() >= 2 && (l.front() == '"' || l.front() == '\'') && l.back() == l.front())
      l = l.substr(1, l.size() - 2);
    if (!l.empty()) return std::string(l);
  }
  return Fail(ErrorCode::kFailedPrecondition, "os-release", "VERSION_CODENAME",
              "the host names no release codename (is it Debian?)");
}

namespace {

struct Entry {
  std::string type, options, uri, suite;
  std::vector<std::string> components;
};

std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ' || c == '\t') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// "deb [opt=v opt2=v] uri suite comp..." (comments and blank lines skipped).
void ParseOneLine(const std::string& text, std::vector<Entry>& out) {
  for (const auto& raw : Split(text, '\n')) {
    std::string_view line = raw;
    if (size_t hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    line = Trim(line);
    if (line.empty()) continue;
    Entry e;
    std::string_view rest = line;
    size_t sp = rest.find_first_of(" \t");
    if (sp == std::string_view::npos) continue;
    e.type = std::string(rest.substr(0, sp));
    rest = Trim(rest.substr(sp));
    if (!rest.empty() && rest.front() == '[') {
      size_t close = rest.find(']');
      if (close == std::string_view::npos) continue;
      e.options = std::string(Trim(rest.substr(1, close - 1)));
      rest = Trim(rest.substr(close + 1));
    }
    auto w = Words(rest);
    if (w.size() < 2) continue;
    e.uri = w[0];
    e.suite = w[1];
    e.components.assign(w.begin() + 2, w.end());
    out.push_back(std::move(e));
  }
}

// deb822 stanzas (blank-line separated; continuation lines start with a
// space): one Entry per type and suite.
void ParseDeb822(const std::string& text, std::vector<Entry>& out) {
  auto flush = [&](std::vector<std::pair<std::string, std::string>>& fields) {
    std::string types, uris, suites, comps, signed_by, enabled = "yes";
    bool inline_key = false;
    for (auto& [k, v] : fields) {
      std::string key = AsciiLower(k);
      if (key == "types") types = v;
      if (key == "uris") uris = v;
      if (key == "suites") suites = v;
      if (key == "components") comps = v;
      if (key == "enabled") enabled = AsciiLower(std::string(Trim(v)));
      if (key == "signed-by") {
        signed_by = std::string(Trim(v));
        inline_key =
            signed_by.find('\n') != std::string::npos || signed_by.find(' ') != std::string::npos;
      }
    }
    fields.clear();
    if (enabled == "no") return;
    for (const auto& t : Words(types)) {
      for (const auto& u : Words(uris)) {
        for (const auto& s : Words(suites)) {
          Entry e{t, "", u, s, Words(comps)};
          if (!signed_by.empty() && !inline_key) e.options = "signed-by=" + signed_by;
          out.push_back(std::move(e));
        }
      }
    }
  };
  std::vector<std::pair<std::string, std::string>> fields;
  for (const auto& raw : Split(text, '\n')) {
    std::string_view line = raw;
    if (!line.empty() && line.front() == '#') continue;
    if (Trim(line).empty()) {
      flush(fields);
      continue;
    }
    if ((line.front() == ' ' || line.front() == '\t') && !fields.empty()) {
      fields.back().second += "\n" + std::string(Trim(line));
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    fields.emplace_back(std::string(Trim(line.substr(0, colon))),
                        std::string(Trim(line.substr(colon + 1))));
  }
  flush(fields);
}

}  // namespace

std::vector<std::string> ChrootSources(const std::vector<AptSourceText>& files,
                                       const std::string& suite) {
  std::vector<Entry> entries;
  for (const auto& f : files) {
    if (f.deb822) {
      ParseDeb822(f.text, entries);
    } else {
      ParseOneLine(f.text, entries);
    }
  }
  std::vector<std::string> out;
  for (const auto& e : entries) {
    if (e.type != "deb" || e.uri.find("://") == std::string::npos) continue;
    if (e.suite != suite && !StartsWith(e.suite, suite + "-")) continue;
    std::string line = "deb ";
    if (!e.options.empty()) line += "[" + e.options + "] ";
    line += e.uri + " " + e.suite;
    for (const auto& c : e.components) line += " " + c;
    if (e.components.empty()) line += " main";
    if (std::find(out.begin(), out.end(), line) == out.end()) out.push_back(line);
  }
  return out;
}

std::vector<std::string> MmdebstrapArgv(const TemplateSpec& spec, const std::string& output,
                                        const std::string& sources_file) {
  std::string include;
  for (const auto& p : spec.packages) include += (include.empty() ? "" : ",") + p;
  // Runs outside the chroot, $1 its root, before the tar is made.
  // mmdebstrap copies the host's hostname and resolv.conf in: a template must
  // not carry the build host's names (the sandbox has its own UTS namespace).
  const std::string hook =
      "set -e; "
      "chroot \"$1\" useradd --create-home --uid " +
      std::to_string(kTemplateUid) + " --user-group --shell /bin/bash " + kTemplateUser +
      "; "
      "echo localhost > \"$1/etc/hostname\"; "
      ": > \"$1/etc/resolv.conf\"; "
      "[ -e \"$1/etc/hosts\" ] || printf '127.0.0.1\\tlocalhost\\n::1\\tlocalhost\\n' > "
      "\"$1/etc/hosts\"";
  std::vector<std::string> argv = {
      "mmdebstrap", "--variant=apt", "--include=" + include, "--customize-hook=" + hook,
      spec.suite,   output};
  if (!sources_file.empty()) argv.push_back(sources_file);
  return argv;
}

std::vector<std::string> InterpArgv() {
  return {"python3", std::string(kInterpDir) + "/server.py", "--port", std::to_string(kInterpPort)};
}

std::vector<std::pair<std::string, std::string>> TemplateLabels(bool code_interpreter) {
  if (!code_interpreter) return {};
  // Ready once its server listens, which it does once its python kernel is
  // up: the pool's sandboxes go idle with the kernel warm (docs/services.md).
  nlohmann::json services = nlohmann::json::array(
      {{{"name", "interp"}, {"argv", InterpArgv()}, {"ready_port", kInterpPort}}});
  return {{kServicesLabel, services.dump()}};
}

ImageConfig TemplateImageConfig(bool code_interpreter) {
  ImageConfig c;
  c.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"};
  // The code interpreter's server is a pre-boot service (the label), not
  // the main: it runs before any claim, so the first runCode finds its kernel.
  c.cmd = {"/bin/bash"};
  for (const auto& [k, v] : TemplateLabels(code_interpreter)) c.labels[k] = v;
  c.working_dir = kTemplateHome;
  c.user = kTemplateUser;
  return c;
}

}  // namespace wb
