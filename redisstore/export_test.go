package redisstore

// BucketOf returns the bucket of a client key among n buckets, for tests.
func BucketOf(client string, n int) int {
	return config{buckets: n}.bucketOf(bucketKey(client))
}
