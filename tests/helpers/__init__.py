"""What tests share that is not a fixture: data generators, fakes, small writers."""
