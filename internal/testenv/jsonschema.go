package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Schema is a JSON Schema document, validated against with the subset of
// keywords docs/schema.json uses: $ref (local), oneOf, type, const, enum,
// required, properties, additionalProperties, items, minimum, maximum,
// pattern. An unknown keyword is an error, so the subset cannot silently
// stop checking.
type Schema struct {
	root map[string]any
}

// LoadSchema reads a JSON Schema file.
func LoadSchema(path string) (*Schema, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Schema{root: root}, nil
}

// Validate checks one JSON document (already decoded with encoding/json).
func (s *Schema) Validate(doc any) error {
	return s.check(s.root, doc, "$")
}

var annotations = []string{"$schema", "$id", "$defs", "title", "description"}

func (s *Schema) check(schema map[string]any, v any, path string) error {
	for kw := range schema {
		if !slices.Contains(annotations, kw) && !slices.Contains(keywords, kw) {
			return fmt.Errorf("%s: schema keyword %q not supported by this validator", path, kw)
		}
	}
	if ref, ok := schema["$ref"].(string); ok {
		target, err := s.resolve(ref)
		if err != nil {
			return err
		}
		return s.check(target, v, path)
	}
	if alts, ok := schema["oneOf"].([]any); ok {
		var errs []string
		matched := 0
		for _, a := range alts {
			if err := s.check(a.(map[string]any), v, path); err != nil {
				errs = append(errs, err.Error())
			} else {
				matched++
			}
		}
		if matched != 1 {
			return fmt.Errorf("%s: matches %d of oneOf, want 1: %s", path, matched, strings.Join(errs, "; "))
		}
	}
	if t, ok := schema["type"]; ok {
		if err := checkType(t, v, path); err != nil {
			return err
		}
	}
	if c, ok := schema["const"]; ok && !reflect.DeepEqual(c, v) {
		return fmt.Errorf("%s: %v, want %v", path, v, c)
	}
	if e, ok := schema["enum"].([]any); ok && !slices.ContainsFunc(e, func(x any) bool { return reflect.DeepEqual(x, v) }) {
		return fmt.Errorf("%s: %v not one of %v", path, v, e)
	}
	if n, ok := v.(float64); ok {
		if min, ok := schema["minimum"].(float64); ok && n < min {
			return fmt.Errorf("%s: %v < minimum %v", path, n, min)
		}
		if max, ok := schema["maximum"].(float64); ok && n > max {
			return fmt.Errorf("%s: %v > maximum %v", path, n, max)
		}
	}
	if p, ok := schema["pattern"].(string); ok {
		if str, ok := v.(string); ok && !regexp.MustCompile(p).MatchString(str) {
			return fmt.Errorf("%s: %q does not match %s", path, str, p)
		}
	}
	if obj, ok := v.(map[string]any); ok {
		if err := s.checkObject(schema, obj, path); err != nil {
			return err
		}
	}
	if arr, ok := v.([]any); ok {
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range arr {
				if err := s.check(items, x, fmt.Sprintf("%s[%d]", path, i)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

var keywords = []string{"$ref", "oneOf", "type", "const", "enum", "required", "properties", "additionalProperties", "items", "minimum", "maximum", "pattern"}

func (s *Schema) checkObject(schema map[string]any, obj map[string]any, path string) error {
	if req, ok := schema["required"].([]any); ok {
		for _, r := range req {
			if _, ok := obj[r.(string)]; !ok {
				return fmt.Errorf("%s: required field %q missing", path, r)
			}
		}
	}
	props, _ := schema["properties"].(map[string]any)
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if p, ok := props[k].(map[string]any); ok {
			if err := s.check(p, obj[k], path+"."+k); err != nil {
				return err
			}
			continue
		}
		switch ap := schema["additionalProperties"].(type) {
		case bool:
			if !ap {
				return fmt.Errorf("%s: field %q is not in the schema", path, k)
			}
		case map[string]any:
			if err := s.check(ap, obj[k], path+"."+k); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Schema) resolve(ref string) (map[string]any, error) {
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	if !ok {
		return nil, fmt.Errorf("$ref %q: only local #/$defs/ references are supported", ref)
	}
	defs, _ := s.root["$defs"].(map[string]any)
	d, ok := defs[name].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("$ref %q: no such definition", ref)
	}
	return d, nil
}

func checkType(t any, v any, path string) error {
	var types []string
	switch t := t.(type) {
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			types = append(types, x.(string))
		}
	}
	for _, typ := range types {
		if typeMatches(typ, v) {
			return nil
		}
	}
	return fmt.Errorf("%s: %T value %v is not of type %v", path, v, v, types)
}

func typeMatches(typ string, v any) bool {
	switch typ {
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(float64)
		return ok
	case "integer":
		n, ok := v.(float64)
		return ok && n == float64(int64(n))
	}
	return false
}
