using Microsoft.Data.Sqlite;
using PolicyGrid.Core.Errors;
using PolicyGrid.Embedded.Storage;
using Shouldly;

namespace PolicyGrid.Embedded.Tests;

/// <summary>
/// The failures the embedded store's SQLite really raises, as the API answers them (the whole server on a
/// full disk: PolicyGrid.Api.Tests' FullDiskTests).
/// </summary>
public sealed class StorageFailuresTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly StorageFailures _translate = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void A_database_that_cannot_grow_is_a_503_saying_the_storage_is_full()
    {
        using var connection = Open(_dir.File("full.db"));
        Run(connection, "PRAGMA max_page_count = 3; CREATE TABLE t(v TEXT)");
        var failure = Should.Throw<SqliteException>(() =>
        {
            for (var i = 0; i < 100; i++) Run(connection, $"INSERT INTO t VALUES ('{new string('x', 4000)}')");
        });

        var answer = _translate.Translate(failure).ShouldNotBeNull();
        answer.Status.ShouldBe(503);
        answer.Code.ShouldBe(ErrorCodes.BackendUnavailable);
        answer.Message.ShouldBe("the server's storage is full (SQLite error 13: database or disk is full); retry once space has been freed on the server's disk");
    }

    [Fact]
    public void A_database_opened_read_only_is_a_503_saying_it_cannot_be_written()
    {
        var path = _dir.File("ro.db");
        using (var writable = Open(path)) Run(writable, "CREATE TABLE t(v TEXT)");
        using var connection = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=False");
        connection.Open();
        var failure = Should.Throw<SqliteException>(() => Run(connection, "INSERT INTO t VALUES ('x')"));

        var answer = _translate.Translate(failure).ShouldNotBeNull();
        answer.Status.ShouldBe(503);
        answer.Message.ShouldStartWith("the server's storage cannot be written (SQLite error 8: attempt to write a readonly database)");
    }

    [Fact]
    public void A_file_that_is_not_a_database_is_a_502_for_its_operator()
    {
        var path = _dir.File("garbage.db");
        File.WriteAllBytes(path, Enumerable.Repeat((byte)0x5A, 8192).ToArray());
        using var connection = Open(path);
        var failure = Should.Throw<SqliteException>(() => Run(connection, "SELECT * FROM sqlite_master"));

        var answer = _translate.Translate(failure).ShouldNotBeNull();
        answer.Status.ShouldBe(502);
        answer.Code.ShouldBe(ErrorCodes.BackendError);
        answer.Message.ShouldContain("database file is damaged");
    }

    [Fact]
    public void Our_own_mistakes_stay_500s()
    {
        using var connection = Open(_dir.File("ours.db"));
        Run(connection, "CREATE TABLE t(v TEXT PRIMARY KEY)");
        Run(connection, "INSERT INTO t VALUES ('a')");
        _translate.Translate(Should.Throw<SqliteException>(() => Run(connection, "INSERT INTO t VALUES ('a')"))).ShouldBeNull();
        _translate.Translate(Should.Throw<SqliteException>(() => Run(connection, "SELECT nope FROM t"))).ShouldBeNull();
        _translate.Translate(Should.Throw<FileNotFoundException>(() => File.ReadAllBytes(_dir.File("missing")))).ShouldBeNull();
        _translate.Translate(new IOException("the disk's, read by DiskFailures", 28)).ShouldBeNull();
        _translate.Translate(new InvalidOperationException("a bug")).ShouldBeNull();
    }

    private static SqliteConnection Open(string path)
    {
        var connection = new SqliteConnection($"Data Source={path};Pooling=False");
        connection.Open();
        return connection;
    }

    private static void Run(SqliteConnection connection, string sql)
    {
        using var command = connection.CreateCommand();
        command.CommandText = sql;
        command.ExecuteNonQuery();
    }
}
