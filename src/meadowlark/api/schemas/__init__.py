"""Request and response bodies of the REST APIs, with the field names clients expect."""
