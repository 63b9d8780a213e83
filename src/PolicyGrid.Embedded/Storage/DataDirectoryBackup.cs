using System.Security.Cryptography;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;

namespace PolicyGrid.Embedded.Storage;

/// <summary>What a backup copied.</summary>
public sealed record DataDirectoryBackupResult(string Destination, long DatabaseBytes, int Bundles, long BundleBytes);

/// <summary>Why a backup was not made (nothing was written, or what was written is not a whole backup).</summary>
public sealed class DataDirectoryBackupException(string message) : Exception(message);

/// <summary>
/// Copies a data directory that a server may be using right now into a new directory that is itself a data directory.
/// Copying the files (<c>cp -r</c>) while the server runs can give a torn database: SQLite keeps recent commits in
/// <c>policygrid.db-wal</c> and moves them into the main file at any moment. The database is copied with SQLite's online
/// backup API instead, in one read transaction, so it is one consistent moment of every document and context; the
/// bundles are copied after it, so every bundle that moment refers to is there (a bundle is stored before the policy
/// that names it, and never removed). The database is put in place last: a destination with <c>policygrid.db</c> is
/// a whole backup.
/// </summary>
public static partial class DataDirectoryBackup
{
    public static DataDirectoryBackupResult Copy(string dataDirectory, string destination, CancellationToken ct = default)
    {
        var data = Path.GetFullPath(dataDirectory);
        var to = Path.GetFullPath(destination);
        var database = Path.Combine(data, EmbeddedStorage.DatabaseFile);
        if (!File.Exists(database))
            throw new DataDirectoryBackupException($"{data} holds no PolicyGrid database ({EmbeddedStorage.DatabaseFile}): give --data the directory the server runs on");
        if (File.Exists(to))
            throw new DataDirectoryBackupException($"the destination {to} is a file: give a new or empty directory");
        if (Directory.Exists(to) && Directory.EnumerateFileSystemEntries(to).Any())
            throw new DataDirectoryBackupException($"the destination {to} is not empty: give a new or empty directory, so no older backup's files mix with this one");
        var sep = Path.DirectorySeparatorChar.ToString();
        if ((to + sep).StartsWith(data + sep, StringComparison.Ordinal))
            throw new DataDirectoryBackupException($"the destination {to} is inside the data directory {data}: give a directory outside it");

        Directory.CreateDirectory(to);
        // The copy holds everything the data directory does (settings, parameters, context): its owner's alone.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(to, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var partial = Path.Combine(to, "." + EmbeddedStorage.DatabaseFile + ".partial");
        CopyDatabase(database, partial);
        var databaseBytes = new FileInfo(partial).Length;
        var (bundles, bundleBytes) = CopyBundles(Path.Combine(data, EmbeddedStorage.BundlesDirectory), Path.Combine(to, EmbeddedStorage.BundlesDirectory), ct);
        File.Move(partial, Path.Combine(to, EmbeddedStorage.DatabaseFile));
        FileBundleStore.SyncDirectory(to);
        return new DataDirectoryBackupResult(to, databaseBytes, bundles, bundleBytes);
    }

    private static void CopyDatabase(string database, string destination)
    {
        // ReadWrite without Create: a database that vanished meanwhile is an error, not a new empty file. Unpooled, so
        // both files are closed (the copy's log checkpointed into it) when this returns.
        var source = new SqliteConnectionStringBuilder { DataSource = database, Mode = SqliteOpenMode.ReadWrite, Pooling = false, DefaultTimeout = 30 };
        var target = new SqliteConnectionStringBuilder { DataSource = destination, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = false };
        using (var from = new SqliteConnection(source.ToString()))
        using (var into = new SqliteConnection(target.ToString()))
        {
            from.Open();
            SqliteDatabase.Execute(from, "PRAGMA busy_timeout=30000;");
            into.Open();
            SqliteDatabase.Execute(into, "PRAGMA synchronous=FULL;");
            // All pages in one step: one read transaction on the source, which a running server's writes do not disturb (WAL).
            from.BackupDatabase(into);
            using var check = into.CreateCommand();
            check.CommandText = "PRAGMA quick_check;";
            var verdict = check.ExecuteScalar() as string;
            if (verdict != "ok")
                throw new DataDirectoryBackupException($"the copied database does not pass SQLite's check ({verdict}): the source database may be damaged");
        }
        using var file = File.OpenHandle(destination, FileMode.Open, FileAccess.ReadWrite);
        RandomAccess.FlushToDisk(file);
    }

    [GeneratedRegex("^[0-9a-f]{64}$", RegexOptions.CultureInvariant)]
    private static partial Regex BundleName();

    // Each bundle is checked against its name while it is copied: a damaged one is named rather than copied as if whole.
    private static (int Count, long Bytes) CopyBundles(string from, string to, CancellationToken ct)
    {
        var root = Path.Combine(from, "sha256");
        if (!Directory.Exists(root)) return (0, 0);
        var count = 0;
        long bytes = 0;
        foreach (var source in Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories))
        {
            ct.ThrowIfCancellationRequested();
            var hex = Path.GetFileName(source);
            // Skips the temp files of uploads in progress (or cut short by a crash).
            if (!BundleName().IsMatch(hex)) continue;
            var directory = Path.Combine(to, "sha256", hex[..2]);
            Directory.CreateDirectory(directory);
            var target = Path.Combine(directory, hex);
            var temp = target + ".partial";
            using (var input = new FileStream(source, FileMode.Open, FileAccess.Read, FileShare.Read))
            using (var output = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                var buffer = new byte[81920];
                int read;
                while ((read = input.Read(buffer)) > 0)
                {
                    hash.AppendData(buffer.AsSpan(0, read));
                    output.Write(buffer.AsSpan(0, read));
                }
                output.Flush(flushToDisk: true);
                if (Convert.ToHexStringLower(hash.GetHashAndReset()) != hex)
                    throw new DataDirectoryBackupException($"bundle {hex} in {from} is damaged (its content does not hash to its name): the backup is not whole");
                bytes += output.Length;
            }
            File.Move(temp, target);
            FileBundleStore.SyncDirectory(directory);
            count++;
        }
        return (count, bytes);
    }
}
