// The pure parts of templates (image/debian_template.h): the table, package
// lists, the cache key, the host's apt sources, mmdebstrap's command line.
#include "image/debian_template.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace wb {
namespace {

bool Has(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

TEST(DebianTemplateTest, TableKnowsBaseOnly) {
  ASSERT_NE(FindKnownTemplate("base"), nullptr);
  EXPECT_EQ(FindKnownTemplate("base:latest"), nullptr);
  EXPECT_EQ(FindKnownTemplate("busybox"), nullptr);
  EXPECT_EQ(FindKnownTemplate(""), nullptr);
  for (const auto& t : KnownTemplates()) {
    EXPECT_TRUE(ImageStore::ValidateName(std::string(t.name)).ok()) << t.name;
    for (auto p : t.packages) EXPECT_TRUE(ValidatePackageName(p).ok()) << p;
  }
}

TEST(DebianTemplateTest, PackageNames) {
  for (const char* ok : {"python3", "ca-certificates", "libstdc++6", "g++", "python3.11", "r8"})
    EXPECT_TRUE(ValidatePackageName(ok).ok()) << ok;
  for (const char* bad : {"", "a", "-rf", "Python3", "foo bar", "foo;rm", "a/b", "x=1", ".ab"}) {
    auto v = ValidatePackageName(bad);
    ASSERT_FALSE(v.ok()) << bad;
    EXPECT_EQ(v.error().code, ErrorCode::kInvalidArgument);
    EXPECT_NE(v.error().ToString().find("package name"), std::string::npos);
  }
  auto l = ParsePackageList(" git, curl,,jq ,");
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(*l, (std::vector<std::string>{"git", "curl", "jq"}));
  auto bad = ParsePackageList("git,--help");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().ToString().find("--help"), std::string::npos) << bad.error().ToString();
}

TEST(DebianTemplateTest, SpecIsDefaultsPlusExtraSortedAndKeyed) {
  auto s = PlanTemplate("base", "bookworm", {});
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_EQ(s->packages, (std::vector<std::string>{"bash", "ca-certificates", "coreutils", "passwd",
                                                   "procps", "python3"}));
  EXPECT_EQ(s->Key(),
            "debian-template v1 suite=bookworm variant=apt "
            "packages=bash,ca-certificates,coreutils,passwd,procps,python3");
  // Order and duplicates do not change the key; another package does.
  auto a = PlanTemplate("mine", "bookworm", {"jq", "git", "bash"});
  auto b = PlanTemplate("mine", "bookworm", {"git", "jq"});
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->Key(), b->Key());
  EXPECT_TRUE(Has(a->packages, "git") && Has(a->packages, "python3"));
  EXPECT_NE(a->Key(), s->Key());
  EXPECT_NE(PlanTemplate("base", "trixie", {})->Key(), s->Key());
  EXPECT_FALSE(PlanTemplate("--help", "bookworm", {}).ok());
  EXPECT_FALSE(PlanTemplate("busybox", "bookworm", {}).ok());
  EXPECT_FALSE(PlanTemplate("base", "bookworm", {"BAD"}).ok());
  EXPECT_FALSE(PlanTemplate("base", "", {}).ok());
}

TEST(DebianTemplateTest, Codename) {
  auto c = OsReleaseCodename(
      "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, "bookworm");
  EXPECT_EQ(*OsReleaseCodename("VERSION_CODENAME=\"trixie\"\n"), "trixie");
  auto none = OsReleaseCodename("ID=alpine\n");
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.error().ToString().find("VERSION_CODENAME"), std::string::npos);
}

TEST(DebianTemplateTest, ChrootSourcesKeepTheHostsDebianEntriesForTheSuite) {
  // This machine's layout: deb822 Debian sources, a third-party deb822
  // repository and a one-line one.
  AptSourceText debian{
      "Types: deb\n"
      "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
      "URIs: http://deb.debian.org/debian\n"
      "Suites: bookworm bookworm-updates\n"
      "Components: main\n"
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
      "\n"
      "Types: deb deb-src\n"
      "URIs: http://deb.debian.org/debian-security\n"
      "Suites: bookworm-security\n"
      "Components: main contrib\n"
      "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
      "\n"
      "Types: deb\n"
      "URIs: http://deb.debian.org/debian\n"
      "Suites: trixie\n"
      "Components: main\n"
      "\n"
      "Enabled: no\n"
      "Types: deb\n"
      "URIs: http://mirror.example/debian\n"
      "Suites: bookworm\n"
      "Components: main\n",
      true};
  AptSourceText node{
      "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"
      "Components: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n abc\n",
      true};
  AptSourceText oneline{
      "# comment\n"
      "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
      "deb [arch=amd64] http://ftp.example/debian bookworm-backports main non-free  # eol\n"
      "deb-src http://ftp.example/debian bookworm main\n"
      "deb cdrom:[Debian]/ bookworm main\n",
      false};
  auto got = ChrootSources({debian, node, oneline}, "bookworm");
  EXPECT_EQ(got, (std::vector<std::string>{
                     "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                     "http://deb.debian.org/debian bookworm main",
                     "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                     "http://deb.debian.org/debian bookworm-updates main",
                     "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
                     "http://deb.debian.org/debian-security bookworm-security main contrib",
                     "deb [arch=amd64] http://ftp.example/debian bookworm-backports main non-free",
                 }));
  EXPECT_TRUE(ChrootSources({node}, "bookworm").empty());
  EXPECT_TRUE(ChrootSources({}, "bookworm").empty());
}

TEST(DebianTemplateTest, MmdebstrapCommandLine) {
  auto s = PlanTemplate("base", "bookworm", {"jq"});
  ASSERT_TRUE(s.ok());
  auto argv = MmdebstrapArgv(*s, "/st/tmp/w/rootfs.tar.zst", "/st/tmp/w/sources.list");
  ASSERT_EQ(argv.size(), 7u);
  EXPECT_EQ(argv[0], "mmdebstrap");
  EXPECT_EQ(argv[1], "--variant=apt");
  EXPECT_EQ(argv[2], "--include=bash,ca-certificates,coreutils,jq,passwd,procps,python3");
  EXPECT_EQ(argv[3].rfind("--customize-hook=", 0), 0u);
  EXPECT_NE(argv[3].find("useradd --create-home --uid 1000 --user-group --shell /bin/bash user"),
            std::string::npos)
      << argv[3];
  EXPECT_NE(argv[3].find("resolv.conf"), std::string::npos);
  EXPECT_EQ(argv[4], "bookworm");
  EXPECT_EQ(argv[5], "/st/tmp/w/rootfs.tar.zst");
  EXPECT_EQ(argv[6], "/st/tmp/w/sources.list");
  // No host sources: mmdebstrap's default mirror for the suite.
  EXPECT_EQ(MmdebstrapArgv(*s, "/o.tar.zst", "").size(), 6u);
}

TEST(DebianTemplateTest, ImageConfigIsE2bsUser) {
  ImageConfig c = TemplateImageConfig();
  EXPECT_EQ(c.user, "user");
  EXPECT_EQ(c.working_dir, "/home/user");
  ASSERT_FALSE(c.env.empty());
  EXPECT_EQ(c.env[0].rfind("PATH=", 0), 0u);
  // A run that names its own user and cwd keeps them.
  proto::ExecRequest req;
  req.argv = {"id"};
  req.user = "root";
  auto applied = c.Apply(req);
  EXPECT_EQ(applied.user, "root");
  EXPECT_EQ(applied.cwd, "/home/user");
}

TEST(DebianTemplateTest, CodeInterpreterShipsTheServer) {
  auto s = PlanTemplate("code-interpreter-v1", "bookworm", {});
  ASSERT_TRUE(s.ok()) << s.error().ToString();
  EXPECT_TRUE(s->code_interpreter);
  for (const char* p : {"python3-ipykernel", "python3-jupyter-client", "python3-numpy",
                        "python3-pandas", "python3-matplotlib", "nodejs", "bash"}) {
    EXPECT_TRUE(Has(s->packages, p)) << p;
  }
  // The root filesystem's key is the packages'; the image's source adds the
  // server's digest, so a new server rebuilds the image, not the rootfs.
  EXPECT_EQ(s->Source("sha256:ab"), s->Key() + " interp=sha256:ab");
  auto base = PlanTemplate("base", "bookworm", {});
  EXPECT_FALSE(base->code_interpreter);
  EXPECT_EQ(base->Source("sha256:ab"), base->Key());

  const std::vector<std::string> argv = {"python3", "/usr/lib/warmbox/interp/server.py", "--port",
                                         "49999"};
  EXPECT_EQ(InterpArgv(), argv);
  // The server is a pre-boot service (docs/services.md), not the main.
  EXPECT_EQ(TemplateImageConfig(true).cmd, std::vector<std::string>{"/bin/bash"});
  EXPECT_EQ(TemplateImageConfig(true).labels.count("org.warmbox.services"), 1u);
  EXPECT_TRUE(TemplateImageConfig(false).labels.empty());
  auto labels = TemplateLabels(true);
  ASSERT_EQ(labels.size(), 1u);
  EXPECT_EQ(labels[0].first, "org.warmbox.services");
  auto services = nlohmann::json::parse(labels[0].second);
  ASSERT_TRUE(services.is_array() && services.size() == 1) << labels[0].second;
  EXPECT_EQ(services[0]["name"], "interp");
  EXPECT_EQ(services[0]["argv"].get<std::vector<std::string>>(), argv);
  // Ready (and so idle in its pool) once the server listens: after its kernel.
  EXPECT_EQ(services[0]["ready_port"], 49999);
  auto parsed = ParseServicesLabel("t", labels[0].second);
  ASSERT_TRUE(parsed.ok()) << parsed.error().ToString();
  EXPECT_EQ((*parsed)[0].ready_port, 49999);
  EXPECT_TRUE(TemplateLabels(false).empty());
}

}  // namespace
}  // namespace wb
