#include "oci/reference.h"

#include <gtest/gtest.h>

#include "tests/assert_ok.h"

namespace wb::oci {
namespace {

std::string Canon(const std::string& s) {
  auto r = ParseReference(s);
  return r.ok() ? r->Canonical() : "ERROR: " + r.error().ToString();
}

TEST(ReferenceTest, DockerHubShortNames) {
  EXPECT_EQ(Canon("python:3.12-slim"), "docker.io/library/python:3.12-slim");
  EXPECT_EQ(Canon("busybox"), "docker.io/library/busybox:latest");
  EXPECT_EQ(Canon("team/tool"), "docker.io/team/tool:latest");
  EXPECT_EQ(Canon("docker.io/python"), "docker.io/library/python:latest");
  // Docker Hub's legacy host is the same registry: one name per image.
  EXPECT_EQ(Canon("index.docker.io/python:3"), "docker.io/library/python:3");
  EXPECT_EQ(Canon("index.docker.io/team/tool"), "docker.io/team/tool:latest");
}

TEST(ReferenceTest, NameLimitAppliesToTheCanonicalNameWhichAlwaysParsesBack) {
  // 240 characters short, 264 once docker.io/library/ is added.
  auto r = ParseReference(std::string(240, 'a'));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().ToString().find("name too long"), std::string::npos) << r.error().ToString();
  // The longest name, with a tag and a digest, still parses back.
  std::string name = "r.io/" + std::string(250, 'b');
  auto full =
      ParseReference(name + ":" + std::string(128, 't') + "@sha256:" + std::string(64, 'a'));
  ASSERT_OK(full);
  auto again = ParseReference(full->Canonical());
  ASSERT_OK(again);
  EXPECT_EQ(again->Canonical(), full->Canonical());
}

TEST(ReferenceTest, RegistryHostsAndPorts) {
  auto r = ParseReference("localhost:5000/team/img@sha256:" + std::string(64, 'a'));
  ASSERT_OK(r);
  EXPECT_EQ(r->registry, "localhost:5000");
  EXPECT_EQ(r->repository, "team/img");
  EXPECT_EQ(r->tag, "");
  EXPECT_EQ(r->digest, "sha256:" + std::string(64, 'a'));
  EXPECT_EQ(r->ManifestRef(), r->digest);
  EXPECT_EQ(Canon("ghcr.io/org/tool:v1.2"), "ghcr.io/org/tool:v1.2");
  EXPECT_EQ(Canon("localhost/img"), "localhost/img:latest");
  EXPECT_EQ(Canon("127.0.0.1:5000/a:b"), "127.0.0.1:5000/a:b");
  // A port-like tag on a docker.io name stays a tag.
  EXPECT_EQ(Canon("img:5000"), "docker.io/library/img:5000");
  EXPECT_EQ(ParseReference("docker.io/library/x").value().ApiHost(), "registry-1.docker.io");
  EXPECT_EQ(ParseReference("ghcr.io/a/b").value().ApiHost(), "ghcr.io");
}

TEST(ReferenceTest, TagAndDigestTogether) {
  std::string d = "sha256:" + std::string(64, '0');
  EXPECT_EQ(Canon("reg.io/a:1@" + d), "reg.io/a:1@" + d);
}

TEST(ReferenceTest, RejectsBadInput) {
  for (const std::string& bad :
       std::vector<std::string>{"", "UPPER/case", "a//b", "a/", "/a", "a:", "a@sha256:abc",
                                "a@md5:" + std::string(32, 'a'), "a:b:c", "a/../b",
                                "a:tag with space", "-a", "a--", "a..b"}) {
    EXPECT_FALSE(ParseReference(bad).ok()) << bad;
  }
}

TEST(ReferenceTest, Digests) {
  EXPECT_TRUE(ValidateDigest("sha256:" + std::string(64, 'f')).ok());
  EXPECT_FALSE(ValidateDigest("sha256:" + std::string(64, 'F')).ok());
  EXPECT_FALSE(ValidateDigest("sha256:" + std::string(63, 'f')).ok());
  EXPECT_FALSE(ValidateDigest("sha512:" + std::string(64, 'f')).ok());
  EXPECT_EQ(DigestHex("sha256:abc"), "abc");
}

TEST(ReferenceTest, Loopback) {
  EXPECT_TRUE(IsLoopbackRegistry("localhost:5000"));
  EXPECT_TRUE(IsLoopbackRegistry("127.0.0.1:41234"));
  EXPECT_TRUE(IsLoopbackRegistry("[::1]:5000"));
  EXPECT_TRUE(IsLoopbackRegistry("localhost"));
  EXPECT_FALSE(IsLoopbackRegistry("docker.io"));
  EXPECT_FALSE(IsLoopbackRegistry("localhost.evil.com:5000"));
  EXPECT_FALSE(IsLoopbackRegistry("10.0.0.1:5000"));
}

}  // namespace
}  // namespace wb::oci
