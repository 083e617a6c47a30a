package testenv

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Schema is a JSON Schema (draft 2020-12) compiled by
// github.com/santhosh-tekuri/jsonschema/v6, which implements all of
// 2020-12 and checks the schema itself against the 2020-12 metaschema.
type Schema struct {
	s *jsonschema.Schema
}

// LoadSchema reads and compiles a JSON Schema file.
func LoadSchema(path string) (*Schema, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	url := "file://" + filepath.ToSlash(abs)
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Schema{s: s}, nil
}

// Validate checks one JSON document (already decoded with encoding/json).
func (s *Schema) Validate(doc any) error {
	return s.s.Validate(doc)
}
