package handlers

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/gatewaydev/coder/sdk"
	"github.com/gatewaydev/coder/store"
)

func toTemplateInfo(t store.Template, workspaces int) sdk.TemplateInfo {
	spec := templateSpec(t)
	return sdk.TemplateInfo{
		ID: t.ID, Name: t.Name, DisplayName: t.DisplayName, Description: t.Description,
		Provisioner: spec.Provisioner, Workspaces: workspaces, Agents: len(spec.Agents),
		CreatedAt: t.CreatedAt, UpdatedAt: t.UpdatedAt,
	}
}

// pushTemplate validates a template file and stores it under name.
func (a *API) pushTemplate(r *http.Request, name, source string, createdBy string) (sdk.TemplateInfo, error) {
	if err := sdk.ValidateName(name); err != nil {
		return sdk.TemplateInfo{}, badRequest("The template name is not valid.", sdk.ValidationError{Field: "name", Detail: err.Error()})
	}
	spec, err := sdk.ParseTemplate([]byte(source))
	if err != nil {
		var te *sdk.TemplateError
		if errors.As(err, &te) {
			return sdk.TemplateInfo{}, badRequest(fmt.Sprintf("The template file has an error: %s", te.Error()),
				sdk.ValidationError{Field: "source", Detail: te.Error()})
		}
		return sdk.TemplateInfo{}, err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return sdk.TemplateInfo{}, err
	}
	t, created, err := a.db.UpsertTemplate(r.Context(), store.Template{
		ID: uuid.NewString(), Name: name, DisplayName: spec.DisplayName, Description: spec.Description,
		Source: source, Spec: b, CreatedBy: createdBy,
	})
	if err != nil {
		return sdk.TemplateInfo{}, err
	}
	info := toTemplateInfo(t, 0)
	info.Created = created
	return info, nil
}

func (a *API) servePushTemplate(w http.ResponseWriter, r *http.Request) error {
	var req sdk.PushTemplateRequest
	if err := readJSON(w, r, &req); err != nil {
		return err
	}
	info, err := a.pushTemplate(r, r.PathValue("name"), req.Source, userFrom(r).ID)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if info.Created {
		code = http.StatusCreated
	}
	writeJSON(w, code, info)
	return nil
}

func (a *API) serveListTemplates(w http.ResponseWriter, r *http.Request) error {
	ts, counts, err := a.db.ListTemplates(r.Context())
	if err != nil {
		return err
	}
	out := make([]sdk.TemplateInfo, 0, len(ts))
	for i, t := range ts {
		out = append(out, toTemplateInfo(t, counts[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
