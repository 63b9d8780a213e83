using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using PolicyGrid.Core.Errors;
using PolicyGrid.Core.Ports;

namespace PolicyGrid.Embedded.Storage;

public static class EmbeddedStorage
{
    public const string DatabaseFile = "policygrid.db";
    public const string BundlesDirectory = "bundles";

    /// <summary>
    /// Registers the single-node stores: documents and context in <c>&lt;dataDirectory&gt;/policygrid.db</c>,
    /// bundles under <c>&lt;dataDirectory&gt;/bundles</c>; their disk's failures answer as <see cref="StorageFailures"/> says.
    /// </summary>
    public static IServiceCollection AddEmbeddedStorage(this IServiceCollection services, string dataDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dataDirectory);
        var root = Path.GetFullPath(dataDirectory);
        Directory.CreateDirectory(root);
        services.TryAddSingleton(TimeProvider.System);
        services.AddSingleton(_ => new SqliteDatabase(Path.Combine(root, DatabaseFile)));
        // The runtime's options are there on serve; a host without them (a tool reading a data directory) indexes nothing.
        services.AddSingleton(sp => new SqliteDocumentStore(sp.GetRequiredService<SqliteDatabase>(),
            sp.GetService<PolicyGrid.Runtime.PolicyRuntimeOptions>()?.Decisions.IndexedFieldList()));
        services.AddSingleton<IDocumentStore>(sp => sp.GetRequiredService<SqliteDocumentStore>());
        services.AddSingleton(sp => new SqliteContextStore(sp.GetRequiredService<SqliteDatabase>(), sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<IContextStore>(sp => sp.GetRequiredService<SqliteContextStore>());
        services.AddSingleton(sp => new FileBundleStore(Path.Combine(root, BundlesDirectory), sp.GetService<Microsoft.Extensions.Logging.ILogger<FileBundleStore>>()));
        services.AddSingleton<IBundleStore>(sp => sp.GetRequiredService<FileBundleStore>());
        services.AddSingleton<IFailureTranslator, StorageFailures>();
        return services;
    }
}
