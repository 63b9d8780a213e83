using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using PolicyGrid.Core.Errors;

namespace PolicyGrid.Kubernetes;

/// <summary>
/// Turns a kubeconfig received as JSON (create-infra's <c>cluster_config</c>) into a client
/// configuration without ever running a program or reading a file: credential plugins
/// (<c>exec</c>, <c>auth-provider</c>) and every field that names a local path are refused with a
/// 400 naming the field, and unknown fields are refused too rather than silently ignored. The
/// library's own kubeconfig loader is never used, so nothing it might honour slips through.
/// Error messages name fields, never values: a kubeconfig holds secrets.
/// </summary>
public static class KubeconfigGuard
{
    private const string Root = "cluster_config";

    private static readonly HashSet<string> TopFields = ["apiVersion", "kind", "clusters", "contexts", "users", "current-context", "preferences", "extensions"];
    private static readonly HashSet<string> ClusterFields = ["server", "certificate-authority-data", "insecure-skip-tls-verify", "tls-server-name", "extensions"];
    private static readonly HashSet<string> UserFields = ["token", "client-certificate-data", "client-key-data", "username", "password", "extensions"];
    private static readonly HashSet<string> ContextFields = ["cluster", "user", "namespace", "extensions"];

    // Fields that would make the client run a program or read a file, with what to send instead.
    private static readonly Dictionary<string, string> Refused = new(StringComparer.Ordinal)
    {
        ["exec"] = "exec credential plugins are refused: the server never runs a program named by a kubeconfig; send a token or client-certificate-data/client-key-data",
        ["auth-provider"] = "auth-provider plugins are refused: they run helper programs and read local files; send a token or client-certificate-data/client-key-data",
        ["client-certificate"] = "file paths are refused: inline the certificate as client-certificate-data (base64)",
        ["client-key"] = "file paths are refused: inline the key as client-key-data (base64)",
        ["certificate-authority"] = "file paths are refused: inline the CA as certificate-authority-data (base64)",
        ["tokenFile"] = "file paths are refused: send the token itself as token",
        ["token-file"] = "file paths are refused: send the token itself as token",
        ["proxy-url"] = "proxies are not supported: the server connects to the API server directly",
        ["as"] = "impersonation is not supported for create-infra",
        ["as-groups"] = "impersonation is not supported for create-infra",
        ["as-uid"] = "impersonation is not supported for create-infra",
        ["as-user-extra"] = "impersonation is not supported for create-infra",
    };

    /// <summary>Validates the kubeconfig and builds the client configuration of its current context.</summary>
    public static KubernetesClientConfiguration ToClientConfiguration(JsonNode? clusterConfig, string fallbackNamespace)
    {
        var errors = new List<FieldError>();
        if (clusterConfig is not JsonObject config)
            throw Problems.Validation(Root, clusterConfig is null ? "is required: a kubeconfig as a JSON object" : "must be a kubeconfig as a JSON object");

        CheckFields(config, TopFields, Root, errors);
        if (config["preferences"] is JsonObject prefs && prefs.Count > 0)
            errors.Add(new FieldError($"{Root}.preferences", "must be empty"));
        var clusters = Named(config, "clusters", "cluster", ClusterFields, errors);
        var users = Named(config, "users", "user", UserFields, errors);
        var contexts = Named(config, "contexts", "context", ContextFields, errors);
        if (errors.Count > 0) throw Problems.Validation(errors);

        var contextName = Text(config["current-context"]);
        if (contextName.Length == 0)
        {
            if (contexts.Count != 1) throw Problems.Validation($"{Root}.current-context", "is required when the kubeconfig has more or fewer than one context");
            contextName = contexts.Keys.Single();
        }
        if (!contexts.TryGetValue(contextName, out var context))
            throw Problems.Validation($"{Root}.current-context", $"names context '{contextName}', which is not in contexts");

        var clusterName = Text(context.Body["cluster"]);
        if (!clusters.TryGetValue(clusterName, out var cluster))
            throw Problems.Validation($"{context.Path}.cluster", $"names cluster '{clusterName}', which is not in clusters");
        var userName = Text(context.Body["user"]);
        Entry? user = null;
        if (userName.Length > 0 && !users.TryGetValue(userName, out user))
            throw Problems.Validation($"{context.Path}.user", $"names user '{userName}', which is not in users");

        var server = Text(cluster.Body["server"]);
        if (!Uri.TryCreate(server, UriKind.Absolute, out var serverUri) || serverUri.Scheme is not ("https" or "http"))
            throw Problems.Validation($"{cluster.Path}.server", "must be an absolute http(s) URL of the API server");

        var result = new KubernetesClientConfiguration
        {
            Host = serverUri.ToString().TrimEnd('/'),
            Namespace = Text(context.Body["namespace"]) is { Length: > 0 } ns ? ns : fallbackNamespace,
            SkipTlsVerify = cluster.Body["insecure-skip-tls-verify"] is JsonValue v && v.GetValueKind() == JsonValueKind.True,
            TlsServerName = Text(cluster.Body["tls-server-name"]) is { Length: > 0 } tls ? tls : null,
        };
        if (Text(cluster.Body["certificate-authority-data"]) is { Length: > 0 } ca)
            result.SslCaCerts = LoadCertificates(ca, $"{cluster.Path}.certificate-authority-data");
        if (user is not null)
        {
            var body = user.Body;
            if (Text(body["token"]) is { Length: > 0 } token) result.AccessToken = token;
            var certData = Text(body["client-certificate-data"]);
            var keyData = Text(body["client-key-data"]);
            if ((certData.Length > 0) != (keyData.Length > 0))
                throw Problems.Validation($"{user.Path}", "client-certificate-data and client-key-data must be given together");
            if (certData.Length > 0)
            {
                RequireBase64(certData, $"{user.Path}.client-certificate-data");
                RequireBase64(keyData, $"{user.Path}.client-key-data");
                result.ClientCertificateData = certData;
                result.ClientCertificateKeyData = keyData;
            }
            if (Text(body["username"]) is { Length: > 0 } username)
            {
                result.Username = username;
                result.Password = Text(body["password"]);
            }
        }
        return result;
    }

    private sealed record Entry(string Path, JsonObject Body);

    // kubeconfig lists are [{"name": n, "<kind>": {...}}]; answers name → entry, checking each entry's fields.
    private static Dictionary<string, Entry> Named(JsonObject config, string list, string kind, HashSet<string> allowed, List<FieldError> errors)
    {
        var result = new Dictionary<string, Entry>(StringComparer.Ordinal);
        var node = config[list];
        if (node is null) return result;
        if (node is not JsonArray items) { errors.Add(new FieldError($"{Root}.{list}", "must be an array")); return result; }
        for (var i = 0; i < items.Count; i++)
        {
            var path = $"{Root}.{list}[{i}]";
            if (items[i] is not JsonObject item) { errors.Add(new FieldError(path, "must be an object")); continue; }
            foreach (var (key, _) in item)
                if (key is not ("name" or "extensions") && key != kind)
                    errors.Add(new FieldError($"{path}.{key}", "is not a kubeconfig field"));
            var name = Text(item["name"]);
            if (name.Length == 0) errors.Add(new FieldError($"{path}.name", "is required"));
            if (item[kind] is not JsonObject body) { errors.Add(new FieldError($"{path}.{kind}", "is required and must be an object")); continue; }
            CheckFields(body, allowed, $"{path}.{kind}", errors);
            result[name] = new Entry($"{path}.{kind}", body);
        }
        return result;
    }

    private static void CheckFields(JsonObject obj, HashSet<string> allowed, string path, List<FieldError> errors)
    {
        foreach (var (key, value) in obj)
        {
            if (Refused.TryGetValue(key, out var why)) errors.Add(new FieldError($"{path}.{key}", why));
            else if (!allowed.Contains(key)) errors.Add(new FieldError($"{path}.{key}", "is not a supported kubeconfig field"));
            else if (key == "extensions") continue;
            else if (value is JsonValue jv && jv.GetValueKind() is JsonValueKind.String or JsonValueKind.True or JsonValueKind.False) continue;
            else if (key is "clusters" or "contexts" or "users" or "preferences") continue;
            else errors.Add(new FieldError($"{path}.{key}", "must be a string"));
        }
    }

    private static string Text(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : "";

    private static void RequireBase64(string value, string path)
    {
        var buffer = new byte[value.Length];
        if (!Convert.TryFromBase64String(value, buffer, out _)) throw Problems.Validation(path, "must be base64");
    }

    private static X509Certificate2Collection LoadCertificates(string base64, string path)
    {
        RequireBase64(base64, path);
        try
        {
            var collection = new X509Certificate2Collection();
            collection.ImportFromPem(Encoding.UTF8.GetString(Convert.FromBase64String(base64)));
            if (collection.Count == 0) throw Problems.Validation(path, "holds no PEM certificate");
            return collection;
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw Problems.Validation(path, $"is not a readable PEM certificate ({e.GetType().Name})");
        }
    }
}
