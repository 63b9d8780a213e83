using System.Formats.Tar;
using System.IO.Compression;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using PolicyGrid.Core.Documents;
using PolicyGrid.Core.Ports;
using Shouldly;
using static PolicyGrid.Api.Tests.PolicyDocuments;

namespace PolicyGrid.Api.Tests;

/// <summary>
/// What a request says about its body's bytes: a Content-Encoding other than identity and, for JSON, a charset other
/// than UTF-8 are refused by name, since the body is read as sent and as UTF-8. Nothing is stored, and the server
/// goes on serving.
/// </summary>
public sealed class RequestBodyEncodingTests(GridServer server) : IClassFixture<GridServer>
{
    private readonly HttpClient client = server.CreateClient();

    private async Task<Answer> PostBytes(string path, byte[] body, string? contentType = "application/json", string? contentEncoding = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new ByteArrayContent(body) };
        // Without validation: the header goes exactly as written (quotes, case, lists).
        if (contentType is not null) request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType).ShouldBeTrue();
        if (contentEncoding is not null) request.Content.Headers.TryAddWithoutValidation("Content-Encoding", contentEncoding).ShouldBeTrue();
        return await client.Exchange(request);
    }

    private async Task<(string Name, byte[] Json)> PolicyBody(string stem)
    {
        var name = Unique(stem);
        return (name, Encoding.UTF8.GetBytes(IpAllowlist(name, await server.StoreBundleAsync()).ToJsonString()));
    }

    private static void ShouldBeBadRequest(Answer answer, params string[] phrases)
    {
        answer.Status.ShouldBe(400, answer.Body?.ToJsonString());
        answer.Success.ShouldBe(false);
        answer.Code.ShouldBe("bad_request");
        foreach (var phrase in phrases) answer.Message.ShouldContain(phrase, Case.Insensitive);
    }

    private async Task ShouldNotBeStored(string name)
    {
        var found = await server.Store.QueryAsync(Collections.Policies, DocumentQuery.All(), TestContext.Current.CancellationToken);
        found.ShouldNotContain(d => d.Body["name"]!.GetValue<string>() == name);
    }

    private async Task ShouldNotBeStored(byte[] archive) =>
        (await server.Bundles.GetAsync(Convert.ToHexStringLower(SHA256.HashData(archive)), TestContext.Current.CancellationToken)).ShouldBeNull();

    private async Task ShouldStillServe()
    {
        var (_, json) = await PolicyBody("after_refusal");
        var created = await PostBytes("/policy", json);
        created.Status.ShouldBe(200, created.Body?.ToJsonString());
    }

    [Theory]
    [InlineData("/policy")]
    [InlineData("/executor/local/execute_policy")]
    [InlineData("/policy/query")]
    public async Task A_json_body_sent_as_a_form_curls_default_without_H_is_a_400_naming_the_content_type_to_send(string path)
    {
        // `curl -d '{...}'` without `-H 'Content-Type: application/json'`: the answer named what was wrong, not the fix.
        var (name, json) = await PolicyBody("sent_as_form");
        var answer = await PostBytes(path, json, "application/x-www-form-urlencoded");
        ShouldBeBadRequest(answer, "'application/x-www-form-urlencoded'", "Content-Type: application/json");
        await ShouldNotBeStored(name);
        await ShouldStillServe();
    }

    private static byte[] Gzip(byte[] bytes)
    {
        using var buffer = new MemoryStream();
        using (var gzip = new GZipStream(buffer, CompressionLevel.Fastest, leaveOpen: true)) gzip.Write(bytes);
        return buffer.ToArray();
    }

    private static byte[] TarGz(string functionPy)
    {
        using var tar = new MemoryStream();
        using (var writer = new TarWriter(tar, leaveOpen: true))
            writer.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "code/function.py") { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(functionPy)) });
        return Gzip(tar.ToArray());
    }

    [Fact]
    public async Task A_gzip_encoded_json_body_is_a_400_naming_the_encoding_not_a_json_parse_error()
    {
        var (name, json) = await PolicyBody("gzip_body");
        var answer = await PostBytes("/policy", Gzip(json), contentEncoding: "gzip");
        ShouldBeBadRequest(answer, "Content-Encoding 'gzip'", "unencoded");
        answer.Message.ShouldNotContain("not valid JSON");
        await ShouldNotBeStored(name);
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("br", "'br'")]
    [InlineData("deflate", "'deflate'")]
    [InlineData("x-made-up", "'x-made-up'")]
    [InlineData("GZIP", "'GZIP'")]
    [InlineData("identity, gzip", "'gzip'")]
    public async Task Any_coding_but_identity_is_a_400_naming_it_even_on_a_body_that_happens_to_be_plain_json(string coding, string named)
    {
        // The bytes are plain JSON: only the header is wrong, and the server may not guess that it is.
        var (name, json) = await PolicyBody("coded_body");
        ShouldBeBadRequest(await PostBytes("/policy", json, contentEncoding: coding), $"Content-Encoding {named}", "unencoded");
        await ShouldNotBeStored(name);
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("identity")]
    [InlineData("Identity")]
    [InlineData("identity, IDENTITY")]
    public async Task Identity_in_any_case_or_a_list_of_it_is_read_as_usual(string coding)
    {
        var (name, json) = await PolicyBody("identity_body");
        var answer = await PostBytes("/policy", json, contentEncoding: coding);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["name"]!.GetValue<string>().ShouldBe(name);
    }

    [Theory]
    [InlineData("/policy/query")]
    [InlineData("/executor/query")]
    [InlineData("/executor/local/execute_policy")]
    [InlineData("/events")]
    public async Task Every_route_that_reads_a_body_refuses_an_encoded_one(string path)
    {
        ShouldBeBadRequest(await PostBytes(path, Gzip("{}"u8.ToArray()), contentEncoding: "gzip"), "Content-Encoding 'gzip'");
        await ShouldStillServe();
    }

    [Fact]
    public async Task An_empty_query_body_labelled_as_encoded_is_refused_too()
    {
        // The header names a coding the server does not read, whatever the length of what follows.
        ShouldBeBadRequest(await PostBytes("/policy/query", [], contentEncoding: "gzip"), "Content-Encoding 'gzip'");
    }

    [Fact]
    public async Task A_tar_gz_bundle_sent_with_content_encoding_gzip_is_a_400_and_is_not_stored()
    {
        // Before, these bytes were stored as the archive itself: a client meaning the transfer to be gzip-encoded
        // (so the archive inside is a tar) got back an address for something else.
        var archive = TarGz(GridServer.EchoPolicy + "\n# sent gzip-encoded\n");
        var answer = await PostBytes("/bundles", archive, "application/gzip", contentEncoding: "gzip");
        ShouldBeBadRequest(answer, "Content-Encoding 'gzip'", "send the bundle unencoded", "sent as it is");
        await ShouldNotBeStored(archive);
        await ShouldStillServe();
    }

    [Fact]
    public async Task A_br_encoded_zip_bundle_is_a_400_and_is_not_stored()
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy + "\n# sent br-encoded\n"));
        ShouldBeBadRequest(await PostBytes("/bundles", zip, "application/zip", contentEncoding: "br"), "Content-Encoding 'br'");
        await ShouldNotBeStored(zip);
    }

    [Fact]
    public async Task A_gzip_encoded_multipart_bundle_is_a_400_and_is_not_stored()
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy + "\n# multipart, gzip-encoded\n"));
        using var form = new MultipartFormDataContent { { new ByteArrayContent(zip), "file", "bundle.zip" } };
        var body = await form.ReadAsByteArrayAsync(TestContext.Current.CancellationToken);
        var answer = await PostBytes("/bundles", Gzip(body), form.Headers.ContentType!.ToString(), contentEncoding: "gzip");
        ShouldBeBadRequest(answer, "Content-Encoding 'gzip'", "send the bundle unencoded");
        await ShouldNotBeStored(zip);
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("application/json; charset=utf-16", "utf-16")]
    [InlineData("application/json; charset=UTF-16LE", "UTF-16LE")]
    [InlineData("application/json;charset=\"utf-32\"", "utf-32")]
    public async Task A_json_body_under_a_wide_charset_is_a_400_naming_the_charset_even_when_its_bytes_are_ascii(string contentType, string charset)
    {
        // Such a label says two or four bytes per character: these ASCII bytes are not what the sender meant.
        var (name, json) = await PolicyBody("charset_body");
        ShouldBeBadRequest(await PostBytes("/policy", json, contentType), $"charset '{charset}'", "UTF-8");
        await ShouldNotBeStored(name);
        await ShouldStillServe();
    }

    [Theory]
    [InlineData("application/json; charset=iso-8859-1")]
    [InlineData("application/json; charset=windows-1252")]
    [InlineData("application/json;charset=\"latin1\"")]
    [InlineData("application/merge-patch+json; charset=us-ascii")]
    public async Task An_ascii_body_under_an_ascii_based_charset_is_read_as_before_since_its_text_is_the_same(string contentType)
    {
        var (name, json) = await PolicyBody("ascii_body");
        var answer = await PostBytes("/policy", json, contentType);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["name"]!.GetValue<string>().ShouldBe(name);
    }

    [Fact]
    public async Task A_latin1_body_labelled_latin1_is_told_about_its_charset_not_about_broken_utf8()
    {
        // The é goes as one raw Latin-1 byte (E9), not as the \u00e9 escape a JSON writer would make of it.
        var name = Unique("caf\u00e9");
        var document = IpAllowlist(name, await server.StoreBundleAsync());
        var latin1 = Encoding.Latin1.GetBytes(document.ToJsonString(new System.Text.Json.JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        latin1.ShouldContain((byte)0xE9);
        var answer = await PostBytes("/policy", latin1, "application/json; charset=ISO-8859-1");
        ShouldBeBadRequest(answer, "charset 'ISO-8859-1'", "send the body as UTF-8");
        answer.Message.ShouldContain("bytes past ASCII");
        answer.Message.ShouldNotContain("not valid UTF-8");
        await ShouldNotBeStored(name);
    }

    [Theory]
    [InlineData("application/json")]
    [InlineData("application/json; charset=utf-8")]
    [InlineData("application/json; charset=UTF-8")]
    [InlineData("application/json;charset=utf8")]
    [InlineData("application/json; charset=\"utf-8\"")]
    [InlineData("APPLICATION/JSON; Charset=Utf-8")]
    [InlineData("application/vnd.api+json; charset=utf-8")]
    [InlineData("application/json; version=2")]
    [InlineData(null)]
    public async Task A_json_body_without_a_charset_or_with_utf8_is_read_as_before(string? contentType)
    {
        var (name, json) = await PolicyBody("utf8_body");
        var answer = await PostBytes("/policy", json, contentType);
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
        answer.Data!["name"]!.GetValue<string>().ShouldBe(name);
    }

    [Fact]
    public async Task A_charset_on_a_raw_bundle_upload_is_no_concern_of_the_archive()
    {
        var zip = GridServer.Zip(("code/function.py", GridServer.EchoPolicy + "\n# text/plain with a charset\n"));
        var answer = await PostBytes("/bundles", zip, "text/plain; charset=iso-8859-1");
        answer.Status.ShouldBe(200, answer.Body?.ToJsonString());
    }
}
