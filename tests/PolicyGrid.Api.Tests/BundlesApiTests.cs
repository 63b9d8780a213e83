using System.Formats.Tar;
using System.IO.Compression;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

public sealed class BundlesApiTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private Task<Answer> Upload(byte[] bytes, string contentType = "application/zip")
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = new ByteArrayContent(bytes) };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        return client.Exchange(request);
    }

    private async Task ShouldNotBeStored(byte[] bytes) =>
        (await server.Bundles.GetAsync(Convert.ToHexStringLower(SHA256.HashData(bytes)), TestContext.Current.CancellationToken)).ShouldBeNull();

    [Fact]
    public async Task Upload_answers_code_sha256_size_and_a_url_that_downloads_the_same_bytes()
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy + "\n# upload test\n"));
        var answer = await Upload(zip);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        var sha = Convert.ToHexStringLower(SHA256.HashData(zip));
        answer.Data!["sha256"]!.GetValue<string>().ShouldBe(sha);
        answer.Data!["code"]!.GetValue<string>().ShouldBe($"bundle://sha256/{sha}");
        answer.Data!["size"]!.GetValue<long>().ShouldBe(zip.Length);
        var url = answer.Data!["url"]!.GetValue<string>();
        url.ShouldStartWith("http");
        url.ShouldEndWith($"/bundles/sha256/{sha}");

        var download = await client.GetAsync(new Uri(url).PathAndQuery, TestContext.Current.CancellationToken);
        download.StatusCode.ShouldBe(System.Net.HttpStatusCode.OK);
        download.Content.Headers.ContentType!.MediaType.ShouldBe("application/zip");
        (await download.Content.ReadAsByteArrayAsync(TestContext.Current.CancellationToken)).ShouldBe(zip);
    }

    [Fact]
    public async Task An_uploaded_code_address_is_accepted_by_policy_create()
    {
        var answer = await Upload(GridServer.Zip(("code/function.py", GridServer.EchoPolicy + "\n# for create\n")));
        var name = Unique("from_upload");
        var created = await client.Post("/policy", IpAllowlist(name, answer.Data!["code"]!.GetValue<string>()).ToJsonString());
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
    }

    [Fact]
    public async Task A_multipart_file_part_is_accepted()
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy + "\n# multipart\n"));
        using var form = new MultipartFormDataContent();
        var part = new ByteArrayContent(zip);
        part.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        form.Add(part, "file", "bundle.zip");
        var answer = await client.Exchange(new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = form });
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["sha256"]!.GetValue<string>().ShouldBe(Convert.ToHexStringLower(SHA256.HashData(zip)));
    }

    [Fact]
    public async Task A_multipart_body_without_a_file_part_is_a_400()
    {
        using var form = new MultipartFormDataContent { { new StringContent("hello"), "other" } };
        var answer = await client.Exchange(new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = form });
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("no 'file' part");
        answer.Message.ShouldContain("raw body");
    }

    [Theory]
    [InlineData("application/octet-stream")]
    [InlineData("application/x-zip-compressed")]
    [InlineData("application/x-tar")]
    [InlineData("application/x-www-form-urlencoded")] // what curl --data-binary sends unless told otherwise
    [InlineData("text/plain")]
    public async Task A_raw_archive_is_accepted_under_any_content_type_but_multipart(string contentType)
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy + $"\n# sent as {contentType}\n"));
        var answer = await Upload(zip, contentType);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["sha256"]!.GetValue<string>().ShouldBe(Convert.ToHexStringLower(SHA256.HashData(zip)));
    }

    [Fact]
    public async Task A_multipart_body_with_two_file_parts_is_a_400_saying_one_archive_per_upload()
    {
        var first = GridServer.Zip(("code/function.py", GridServer.EchoPolicy + "\n# first of two\n"));
        var second = GridServer.Zip(("code/function.py", GridServer.EchoPolicy + "\n# second of two\n"));
        using var form = new MultipartFormDataContent { { new ByteArrayContent(first), "file", "a.zip" }, { new ByteArrayContent(second), "file", "b.zip" } };
        var answer = await client.Exchange(new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = form });
        answer.Status.ShouldBe(400);
        answer.Message.ShouldContain("2 'file' parts");
        answer.Message.ShouldContain("one archive per upload");
        await ShouldNotBeStored(first);
        await ShouldNotBeStored(second);
    }

    [Fact]
    public async Task Bytes_that_are_no_archive_are_a_400_listing_what_is_accepted()
    {
        var text = Encoding.UTF8.GetBytes("name=value&other=1");
        var answer = await Upload(text, "application/x-www-form-urlencoded");
        answer.Status.ShouldBe(400);
        answer.Message.ShouldContain(".zip, .tar.gz or .tar.xz archive as the raw body");
        answer.Message.ShouldContain("'file' of a multipart/form-data body");
        await ShouldNotBeStored(text);
    }

    [Fact]
    public async Task A_multipart_type_other_than_form_data_is_a_400_listing_what_is_accepted()
    {
        var answer = await Upload(GridServer.Zip(GridServer.EchoPolicy), "multipart/mixed; boundary=x");
        answer.Status.ShouldBe(400);
        answer.Message.ShouldContain("'multipart/mixed'");
        answer.Message.ShouldContain("multipart/form-data");
    }

    [Fact]
    public async Task A_tar_gz_bundle_is_accepted_and_downloads_as_gzip()
    {
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gzip))
        {
            var entry = new PaxTarEntry(TarEntryType.RegularFile, "code/function.py") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(GridServer.EchoPolicy)) };
            tar.WriteEntry(entry);
        }
        var answer = await Upload(buffer.ToArray(), "application/gzip");
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        var download = await client.GetAsync($"/bundles/sha256/{answer.Data!["sha256"]}", TestContext.Current.CancellationToken);
        download.Content.Headers.ContentType!.MediaType.ShouldBe("application/gzip");
    }

    [Fact]
    public async Task A_zip_that_is_not_an_archive_is_a_400_and_stores_nothing()
    {
        var notAZip = Encoding.UTF8.GetBytes("this is plain text pretending to be a zip");
        var answer = await Upload(notAZip);
        answer.Status.ShouldBe(400);
        answer.Code.ShouldBe("bad_request");
        answer.Message!.ShouldContain("not a readable archive");
        await ShouldNotBeStored(notAZip);
    }

    [Fact]
    public async Task A_truncated_zip_is_a_400_and_stores_nothing()
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy));
        var truncated = zip[..(zip.Length / 2)];
        var answer = await Upload(truncated);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("zip");
        await ShouldNotBeStored(truncated);
    }

    [Fact]
    public async Task An_empty_upload_is_a_400()
    {
        var answer = await Upload([]);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("empty");
    }

    [Fact]
    public async Task Downloads_of_unknown_or_malformed_hashes_are_404_and_400()
    {
        var unknown = await client.Get($"/bundles/sha256/{new string('b', 64)}");
        unknown.Status.ShouldBe(404);
        unknown.Code.ShouldBe("not_found");
        var malformed = await client.Get("/bundles/sha256/xyz");
        malformed.Status.ShouldBe(400);
        malformed.Message!.ShouldContain("64 lowercase hex");
    }
}

/// <summary>A server with small limits, so "too large" is cheap to provoke.</summary>
public sealed class SmallLimitsServer : GridServer
{
    public SmallLimitsServer() => Settings = new() { ["PolicyGrid:Api:MaxBundleBytes"] = "4096", ["PolicyGrid:Api:MaxBodyBytes"] = "2048" };
}

public sealed class SizeLimitTests(SmallLimitsServer server) : IClassFixture<SmallLimitsServer>
{
    private readonly HttpClient client = server.CreateClient();

    [Fact]
    public async Task A_bundle_over_the_limit_is_a_413_and_stores_nothing()
    {
        var big = GridServer.Zip(("code/function.py", GridServer.EchoPolicy), ("code/data.bin", Convert.ToBase64String(RandomNumberGenerator.GetBytes(8000))));
        var request = new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = new ByteArrayContent(big) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var answer = await client.Exchange(request);
        answer.Status.ShouldBe(413);
        answer.Code.ShouldBe("too_large");
        answer.Message!.ShouldContain("4096");
        (await server.Bundles.GetAsync(Convert.ToHexStringLower(SHA256.HashData(big)), TestContext.Current.CancellationToken)).ShouldBeNull();
    }

    [Fact]
    public async Task A_json_body_over_the_configured_limit_is_a_413_even_without_a_content_length()
    {
        var body = $$$"""{"executor_id": "big", "executor_host_uri": "http://h:1", "executor_metadata": {"blob": "{{{new string('x', 3000)}}}"}}""";
        var request = new HttpRequestMessage(HttpMethod.Post, "/executor") { Content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(body))) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.TransferEncodingChunked = true;
        var answer = await client.Exchange(request);
        answer.Status.ShouldBe(413);
        answer.Message!.ShouldContain("2048");
        (await client.Get("/executor/big")).Status.ShouldBe(404);
    }
}

/// <summary>Archives that would escape their directory are refused at upload, not first at unpack.</summary>
public sealed class UnsafeBundleTests(GridServer server) : IClassFixture<GridServer>
{
    [Theory]
    [InlineData("../escape.py")]
    [InlineData("/etc/cron.d/evil")]
    public async Task A_zip_with_an_entry_outside_the_bundle_is_a_400_and_stores_nothing(string entry)
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy), (entry, "print('owned')"));
        var request = new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = new ByteArrayContent(zip) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        var answer = await server.CreateClient().Exchange(request);
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain(entry.TrimStart('/').Split('/')[0] == ".." ? ".." : "absolute");
        (await server.Bundles.GetAsync(Convert.ToHexStringLower(SHA256.HashData(zip)), TestContext.Current.CancellationToken)).ShouldBeNull();
    }

    public static TheoryData<string, string> UnwritableEntries => new()
    {
        { "code/" + new string('a', 255) + ".py", "at most 255 bytes" },
        { string.Join('/', Enumerable.Repeat("d" + new string('e', 99), 12)) + "/x.py", "at most 1024 bytes" },
    };

    [Theory]
    [MemberData(nameof(UnwritableEntries))]
    public async Task A_zip_with_a_name_no_file_system_holds_is_a_400_at_upload_naming_the_entry_and_the_limit(string entry, string limit)
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy), (entry, "x = 1"));
        var answer = await Upload(zip);
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Code.ShouldBe("bad_request");
        answer.Message!.ShouldContain(limit);
        answer.Message!.ShouldContain(entry[..40]);
        answer.Message!.Length.ShouldBeLessThan(500);
        (await server.Bundles.GetAsync(Convert.ToHexStringLower(SHA256.HashData(zip)), TestContext.Current.CancellationToken)).ShouldBeNull();
    }

    [Fact]
    public async Task A_zip_naming_the_same_file_twice_is_a_400_at_upload()
    {
        var answer = await Upload(GridServer.Zip(("code/function.py", GridServer.EchoPolicy), ("code/function.py", "raise SystemExit")));
        answer.Status.ShouldBe(400);
        answer.Message!.ShouldContain("'code/function.py' appears more than once");
    }

    [Fact]
    public async Task A_stored_bundle_with_an_overlong_name_makes_policy_create_and_update_a_400_not_a_500()
    {
        // Stored behind the upload check (as a bundle stored before it existed would be): unpacking is the safety net.
        // Its content differs from the upload test's zip with the same entry name: the same bytes would be the same
        // stored bundle, and that test, run after this one, would find it stored.
        var client = server.CreateClient();
        var bad = (await server.Bundles.PutAsync(GridServer.Zip(("code/function.py", GridServer.EchoPolicy), ("code/" + new string('a', 255) + ".py", "x = 2")), TestContext.Current.CancellationToken)).Code;
        var name = Unique("long_entry");
        var created = await client.Post("/policy", IpAllowlist(name, bad).ToJsonString());
        created.Status.ShouldBe(400, created.Body?.ToJsonString());
        created.Message!.ShouldContain("at most 255 bytes");

        (await client.Post("/policy", IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString())).Status.ShouldBe(200);
        var updated = await client.Put($"/policy/{Uri(name)}", $$$"""{"$set": {"code": "{{{bad}}}"}}""");
        updated.Status.ShouldBe(400, updated.Body?.ToJsonString());
        updated.Message!.ShouldContain("at most 255 bytes");
    }

    private Task<Answer> Upload(byte[] zip)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/bundles") { Content = new ByteArrayContent(zip) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        return server.CreateClient().Exchange(request);
    }
}
