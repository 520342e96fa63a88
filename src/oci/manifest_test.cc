#include "oci/manifest.h"

#include <gtest/gtest.h>

#include "tests/assert_ok.h"

namespace wb::oci {
namespace {

const std::string kD1 = "sha256:" + std::string(64, '1');
const std::string kD2 = "sha256:" + std::string(64, '2');
const std::string kD3 = "sha256:" + std::string(64, '3');

std::string Index() {
  return R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
         kD1 + R"(","size":10,
     "platform":{"os":"linux","architecture":"arm64","variant":"v8"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
         kD3 + R"(","size":12,
     "platform":{"os":"unknown","architecture":"unknown"}},
    {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":")" +
         kD2 + R"(","size":11,
     "platform":{"os":"linux","architecture":"amd64"},
     "annotations":{"org.opencontainers.image.ref.name":"v1"}}]})";
}

TEST(ManifestTest, ClassifiesByMediaTypeHeaderOrShape) {
  EXPECT_EQ(ClassifyManifest("", Index()).value(), ManifestKind::kIndex);
  EXPECT_EQ(ClassifyManifest(kDockerList, "{}").value(), ManifestKind::kIndex);
  EXPECT_EQ(ClassifyManifest(std::string(kDockerManifest) + "; charset=utf-8", "{}").value(),
            ManifestKind::kManifest);
  EXPECT_EQ(ClassifyManifest("application/json", R"({"config":{},"layers":[]})").value(),
            ManifestKind::kManifest);
  auto v1 = ClassifyManifest("application/vnd.docker.distribution.manifest.v1+prettyjws", "{}");
  ASSERT_FALSE(v1.ok());
  EXPECT_NE(v1.error().ToString().find("schema 1"), std::string::npos);
  EXPECT_FALSE(ClassifyManifest("", "not json").ok());
  EXPECT_FALSE(ClassifyManifest("", "{}").ok());
}

TEST(ManifestTest, SelectsLinuxAmd64FromIndex) {
  auto idx = ParseIndex(Index());
  ASSERT_OK(idx);
  ASSERT_EQ(idx->size(), 3u);
  auto d = SelectPlatform(*idx, "linux", "amd64");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->digest, kD2);
  EXPECT_EQ(d->size, 11u);
  EXPECT_EQ(d->ref_name, "v1");
  auto none = SelectPlatform(*idx, "linux", "s390x");
  ASSERT_FALSE(none.ok());
  // The error lists what the image has (not the attestation entry).
  EXPECT_NE(none.error().ToString().find("linux/arm64/v8"), std::string::npos);
  EXPECT_EQ(none.error().ToString().find("unknown"), std::string::npos);
}

TEST(ManifestTest, ParsesDockerAndOciManifests) {
  std::string m =
      R"({"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
    "config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":")" +
      kD1 + R"(","size":100},
    "layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":")" +
      kD2 + R"(","size":5},
              {"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":")" +
      kD3 + R"(","size":6}]})";
  auto p = ParseManifest(m);
  ASSERT_OK(p);
  EXPECT_EQ(p->config.digest, kD1);
  ASSERT_EQ(p->layers.size(), 2u);
  EXPECT_EQ(p->layers[0].digest, kD2);
  EXPECT_EQ(p->layers[1].size, 6u);
}

TEST(ManifestTest, RejectsBadDescriptors) {
  EXPECT_FALSE(ParseManifest(R"({"config":{"digest":"sha256:zz","size":1},"layers":[]})").ok());
  EXPECT_FALSE(ParseManifest(R"({"config":{"digest":")" + kD1 + R"("},"layers":[]})").ok());
  EXPECT_FALSE(
      ParseManifest(R"({"config":{"digest":")" + kD1 + R"(","size":-1},"layers":[]})").ok());
  EXPECT_FALSE(ParseManifest(R"({"config":{"digest":")" + kD1 + R"(","size":1},"layers":[
    {"mediaType":"application/x-evil","digest":")" +
                             kD2 + R"(","size":1}]})")
                   .ok());
  EXPECT_FALSE(ParseIndex(R"({"manifests":"x"})").ok());
}

// Issue 19, finding 4: a registry's documents are bounded like any request.
TEST(ManifestTest, RejectsDeepNesting) {
  std::string deep = R"({"config":)" + std::string(100 * 1024, '[') + "}";
  for (auto r :
       {ParseManifest(deep).error(), ParseIndex(deep).error(), ParseImageConfig(deep).error()}) {
    EXPECT_NE(r.ToString().find("nested deeper"), std::string::npos) << r.ToString();
  }
}

TEST(ManifestTest, ImageConfigDefaults) {
  auto c = ParseImageConfig(R"({"architecture":"amd64","config":{"Env":["PATH=/usr/bin","A=1"],
    "Cmd":["python3"],"Entrypoint":["/init","--"],"WorkingDir":"/app","User":"1000:1000"}})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->env, (std::vector<std::string>{"PATH=/usr/bin", "A=1"}));
  EXPECT_EQ(c->cmd, (std::vector<std::string>{"python3"}));
  EXPECT_EQ(c->entrypoint, (std::vector<std::string>{"/init", "--"}));
  EXPECT_EQ(c->working_dir, "/app");
  EXPECT_EQ(c->user, "1000:1000");
  EXPECT_TRUE(c->diff_ids.empty());
  auto empty = ParseImageConfig(R"({"config":null})");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->cmd.empty());
  auto layered = ParseImageConfig(
      R"({"rootfs":{"type":"layers","diff_ids":["sha256:aa","sha256:bb"]},"config":null})");
  ASSERT_TRUE(layered.ok());
  EXPECT_EQ(layered->diff_ids, (std::vector<std::string>{"sha256:aa", "sha256:bb"}));
  EXPECT_FALSE(ParseImageConfig("[]").ok());
}

}  // namespace
}  // namespace wb::oci
