enum _PlaceholderParleyStore {}
